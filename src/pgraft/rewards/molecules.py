"""Molecule rewards with RDKit: validity, QED, synthetic accessibility (SA) and their weighted sum.

Every function takes SMILES strings (None or an unparsable string = an invalid molecule) and never raises
on a bad molecule: an invalid molecule gets INVALID_REWARD.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Iterable, Mapping

import numpy as np

#: reward of an invalid molecule: below every valid molecule's reward, because each component of a valid
#: molecule lies in [0, 1] and the weights are non-negative; so every GRS rule ranks valid above invalid
INVALID_REWARD = -1.0

#: the components a weighted reward may combine, each in [0, 1] for a valid molecule, higher is better
COMPONENTS = ("validity", "qed", "sa")

#: the named rewards: each is a fixed weighting of the components ("weighted" takes its weights from params)
NAMED_WEIGHTS: dict[str, dict[str, float]] = {
    "validity": {"validity": 1.0},
    "qed": {"qed": 1.0},
    "sa": {"sa": 1.0},
}
REWARD_NAMES = (*NAMED_WEIGHTS, "weighted")


@functools.lru_cache(maxsize=1)
def _quiet_rdkit() -> None:
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")  # invalid samples are expected: their sanitisation errors are not news


@functools.lru_cache(maxsize=1)
def _sascorer():
    """RDKit Contrib's SA_Score module (Ertl & Schuffenhauer 2009), imported from the RDKit installation."""
    from rdkit.Chem import RDConfig

    path = os.path.join(RDConfig.RDContribDir, "SA_Score")
    if path not in sys.path:
        sys.path.append(path)
    import sascorer

    return sascorer


@functools.lru_cache(maxsize=200_000)
def properties(smiles: str | None) -> tuple[float, float] | None:
    """(QED in [0, 1], SA score in [1, 10], lower = easier to make) of a valid molecule; None if invalid."""
    if not smiles:
        return None
    from rdkit import Chem
    from rdkit.Chem import QED

    _quiet_rdkit()
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    try:
        return float(QED.qed(mol)), float(_sascorer().calculateScore(mol))
    except (ValueError, RuntimeError, ZeroDivisionError):  # RDKit refuses some exotic valid molecules
        return None


def sa_normalised(sa: float) -> float:
    """SA mapped to [0, 1], higher = easier to synthesise: (10 - SA) / 9."""
    return (10.0 - sa) / 9.0


def resolve_weights(name: str, weights: Mapping[str, float] | None = None) -> dict[str, float]:
    """The component weights of reward `name` ("weighted": the given `weights`)."""
    if name == "weighted":
        weights = dict(weights or {})
        bad = [c for c in weights if c not in COMPONENTS]
        if bad or any(w < 0 for w in weights.values()):
            raise ValueError(f"reward weights {weights}: keys must be among {list(COMPONENTS)}, values >= 0")
        return weights
    if name not in NAMED_WEIGHTS:
        raise ValueError(f"unknown molecule reward {name!r}; valid: {list(REWARD_NAMES)}")
    return NAMED_WEIGHTS[name]


def molecule_rewards(smiles: Iterable[str | None], name: str = "qed",
                     weights: Mapping[str, float] | None = None) -> np.ndarray:
    """r = Σ_c w_c·component_c for each valid molecule (validity = 1, qed, sa = (10 - SA)/9); INVALID_REWARD else."""
    w = resolve_weights(name, weights)
    out = []
    for s in smiles:
        props = properties(s)
        if props is None:
            out.append(INVALID_REWARD)
            continue
        qed, sa = props
        parts = {"validity": 1.0, "qed": qed, "sa": sa_normalised(sa)}
        out.append(sum(w.get(c, 0.0) * parts[c] for c in COMPONENTS))
    return np.asarray(out, dtype=np.float64)
