"""QM9 molecule generation: graphs of at most 9 heavy atoms, an ε-network over them, RDKit rewards."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from pgraft.domains import mol_graph
from pgraft.domains.base import Cond, DiffusionDomain
from pgraft.errors import ArtifactError
from pgraft.params_base import FilterParams, PretrainParams, Strict
from pgraft.rewards import molecules

QM9_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
#: the canonical SMILES of the training split, saved next to the base model (novelty needs them)
TRAIN_SMILES_FILE = "qm9_train_smiles.json"
#: the dedup key of an invalid sample: all invalid samples count as one "molecule", so top_k_dedup keeps
#: at most one of them per group (and only when a group has fewer than k distinct valid molecules)
INVALID_KEY = ""


@functools.lru_cache(maxsize=1)
def qm9_smiles() -> tuple[str, ...]:
    """The SMILES of all 130,831 QM9 molecules, in the order of the qm9pack CSV files (nothing downloaded).

    The files are located with importlib.util.find_spec rather than importlib.resources.files, which would
    import qm9pack/__init__.py, and that needs pkg_resources (gone from current setuptools)."""
    import pandas as pd

    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise ArtifactError("QM9 data: the package qm9pack is not installed (pip install qm9pack==1.0.3)")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    frames = []
    for name in QM9_FILES:
        path = data / name
        if not path.exists():
            raise ArtifactError(f"QM9 data: {path} not found (expected qm9pack 1.0.3 with data/{name})")
        frame = pd.read_csv(path, usecols=["SMILES"])
        frames.append(frame["SMILES"].astype(str))
    return tuple(pd.concat(frames, ignore_index=True))


class Qm9DataParams(Strict):
    test_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    split_seed: int = Field(0, ge=0)


class Qm9ModelParams(Strict):
    name: Literal["transformer", "mlp"] = "mlp"
    hidden: int = Field(384, ge=4)
    layers: int = Field(4, ge=1, le=16)
    pair_hidden: int = Field(32, ge=4)
    heads: int = Field(4, ge=1)


class Qm9RewardWeights(Strict):
    validity: float = Field(0.0, ge=0.0)
    qed: float = Field(1.0, ge=0.0)
    sa: float = Field(0.0, ge=0.0)


class Qm9RewardParams(Strict):
    name: Literal["validity", "qed", "sa", "weighted"] = "qed"
    weights: Qm9RewardWeights = Qm9RewardWeights()


class Qm9Params(Strict):
    data: Qm9DataParams = Qm9DataParams()
    model: Qm9ModelParams = Qm9ModelParams()
    pretrain: PretrainParams = PretrainParams(steps=3000, batch_size=256, learning_rate=2e-3)
    reward: Qm9RewardParams = Qm9RewardParams()
    filter: FilterParams | None = None


class Qm9Domain(DiffusionDomain):
    name = "qm9"
    Params = Qm9Params
    shape = (mol_graph.NUM_FEATURES,)
    gallery_size = 12
    table_metrics = ("validity", "uniqueness", "novelty", "qed_mean", "sa_mean")

    def __init__(self, params):
        super().__init__(params)
        self._encoded: dict[int, np.ndarray | None] = {}
        self._train_canonical: frozenset[str] | None = None

    # --- data ---

    def split(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Train / test SMILES by a fixed seeded permutation of all QM9 molecules (data.split_seed)."""
        return qm9_split(self.params.data.split_seed, self.params.data.test_fraction)

    def sample_data(self, n: int, generator):
        """n training molecules drawn uniformly (with replacement) as ±1 graph vectors. The 0.44 % of QM9
        with charged atoms (zwitterions, nitro groups) do not fit the representation: they are redrawn."""
        import torch

        train, _ = self.split()
        out: list[np.ndarray] = []
        while len(out) < n:
            for i in torch.randint(len(train), (n - len(out),), generator=generator).tolist():
                if i not in self._encoded:
                    self._encoded[i] = mol_graph.encode_smiles(train[i])
                if self._encoded[i] is not None:
                    out.append(self._encoded[i])
        return torch.as_tensor(np.stack(out))

    # --- base model ---

    def build_model(self):
        m = self.params.model
        return self.model_from_config(_model_config(m.name, m.hidden, m.layers, m.pair_hidden, m.heads))

    def model_from_config(self, config: dict):
        """The network of params model.name (a saved config must match that architecture)."""
        from pgraft.models.graph_transformer import GraphTransformer
        from pgraft.models.mlp import MLPDenoiser

        cls = {"transformer": GraphTransformer, "mlp": MLPDenoiser}[self.params.model.name]
        try:
            return cls(**config)
        except TypeError as err:
            raise ArtifactError(f"qm9 model config {config} does not fit model.name="
                                f"{self.params.model.name!r} ({err})") from err

    # --- rewards and metrics ---

    def smiles(self, x: np.ndarray) -> list[str | None]:
        """Canonical SMILES of each sample (None: not one valid molecule)."""
        return mol_graph.canonical_smiles(np.asarray(x, dtype=np.float32).reshape(len(x), -1))

    def reward(self, x: np.ndarray, cond: Cond = None) -> np.ndarray:
        """reward.name of each decoded molecule; an invalid sample gets molecules.INVALID_REWARD (-1)."""
        r = self.params.reward
        return molecules.molecule_rewards(self.smiles(x), r.name, r.weights.model_dump())

    def dedup_keys(self, x: np.ndarray) -> list[str]:
        """Canonical SMILES; every invalid sample gets the same key INVALID_KEY ("")."""
        return [s or INVALID_KEY for s in self.smiles(x)]

    def train_canonical(self) -> frozenset[str]:
        """Canonical SMILES of the training split (loaded by load_auxiliary, else computed once here)."""
        if self._train_canonical is None:
            d = self.params.data
            self._train_canonical = train_canonical_smiles(d.split_seed, d.test_fraction)
        return self._train_canonical

    def extra_metrics(self, x: np.ndarray, cond: Cond = None) -> dict[str, float]:
        """validity (fraction of samples that are one valid molecule), uniqueness (distinct / valid),
        novelty (distinct valid not in the training split / distinct valid), and the mean QED and SA score
        (raw, 1 easy .. 10 hard) of the distinct valid molecules; 0 where there is nothing to average."""
        valid = [s for s in self.smiles(x) if s]
        unique = sorted(set(valid))
        props = [p for p in map(molecules.properties, unique) if p is not None]
        return {
            "validity": len(valid) / max(len(x), 1),
            "uniqueness": len(unique) / len(valid) if valid else 0.0,
            "novelty": sum(s not in self.train_canonical() for s in unique) / len(unique) if unique else 0.0,
            "qed_mean": float(np.mean([q for q, _ in props])) if props else 0.0,
            "sa_mean": float(np.mean([s for _, s in props])) if props else 0.0,
        }

    # --- auxiliary data: the novelty reference travels with the base model ---

    def train_auxiliary(self, out_dir: Path, generator) -> dict[str, float]:
        from pgraft.io import write_json

        train = sorted(self.train_canonical())
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        write_json(Path(out_dir) / TRAIN_SMILES_FILE, train)
        return {"train_unique_molecules": len(train)}

    def load_auxiliary(self, model_dir: Path) -> None:
        """Read the training split's canonical SMILES saved by train_auxiliary (if absent: computed on use)."""
        from pgraft.io import read_json

        path = Path(model_dir) / TRAIN_SMILES_FILE
        if path.exists():
            smiles = read_json(path)
            if not isinstance(smiles, list) or not all(isinstance(s, str) for s in smiles):
                raise ArtifactError(f"{path}: expected a JSON list of SMILES strings")
            self._train_canonical = frozenset(smiles)

    # --- gallery ---

    def draw(self, ax, x: np.ndarray, cond: Cond = None) -> None:
        """The decoded molecules in one row (RDKit drawing), SMILES below each; invalid: a crossed-out cell
        labelled "invalid". Ticks and frame are hidden, the axis label (set by the caller) is kept."""
        from rdkit import Chem
        from rdkit.Chem import Draw

        mols = mol_graph.decode(np.asarray(x, dtype=np.float32).reshape(len(x), -1))
        legends = [Chem.MolToSmiles(m) if m is not None else "invalid" for m in mols]
        image = Draw.MolsToGridImage([m if m is not None else Chem.Mol() for m in mols],
                                     molsPerRow=max(len(mols), 1), subImgSize=(160, 160), legends=legends)
        ax.imshow(np.asarray(image))
        for i in (i for i, m in enumerate(mols) if m is None):  # RDKit draws nothing for an empty molecule
            left, right = i * 160 + 30, (i + 1) * 160 - 30
            ax.plot([left, right, np.nan, left, right], [30, 130, np.nan, 130, 30], color="0.55", lw=1)
            ax.text((left + right) / 2, 150, "invalid", ha="center", va="center", fontsize=7, color="C3")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)


class Qm9DedupDomain(Qm9Domain):
    """The same domain, filtered with its own section's rule (top_k_dedup): a top_k vs top_k_dedup comparison."""

    name = "qm9_dedup"


def _model_config(name: str, hidden: int, layers: int, pair_hidden: int, heads: int) -> dict:
    if name == "mlp":
        return {"dim": mol_graph.NUM_FEATURES, "hidden": hidden, "layers": layers}
    return {"num_atoms": mol_graph.MAX_ATOMS, "atom_classes": len(mol_graph.ATOM_CLASSES),
            "bond_classes": len(mol_graph.BOND_CLASSES), "hidden": hidden, "pair_hidden": pair_hidden,
            "layers": layers, "heads": heads}


@functools.lru_cache(maxsize=2)
def qm9_split(split_seed: int, test_fraction: float) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(train, test) SMILES: a seeded permutation of all QM9 molecules, the first test_fraction held out."""
    smiles = qm9_smiles()
    order = np.random.default_rng(split_seed).permutation(len(smiles))
    n_test = max(1, int(round(test_fraction * len(smiles))))
    return tuple(smiles[i] for i in order[n_test:]), tuple(smiles[i] for i in order[:n_test])


@functools.lru_cache(maxsize=2)
def train_canonical_smiles(split_seed: int, test_fraction: float) -> frozenset[str]:
    """Canonical SMILES of the training split (about 6 s of RDKit: computed once per process)."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    mols = (Chem.MolFromSmiles(s) for s in qm9_split(split_seed, test_fraction)[0])
    return frozenset(Chem.MolToSmiles(m) for m in mols if m is not None)
