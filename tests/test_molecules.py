"""QM9 molecule domain: RDKit rewards on hand-made cases, the graph codec, dedup keys and metrics."""

from __future__ import annotations

import numpy as np
import pytest

from pgraft.domains import mol_graph
from pgraft.domains.qm9 import INVALID_KEY, Qm9Domain, Qm9Params, qm9_smiles
from pgraft.rewards import molecules

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"


def test_aspirin_qed_and_sa_match_rdkit_reference_values():
    qed, sa = molecules.properties(ASPIRIN)
    assert qed == pytest.approx(0.550, abs=1e-3)
    assert sa == pytest.approx(1.58, abs=1e-2)
    assert molecules.molecule_rewards([ASPIRIN], "sa")[0] == pytest.approx((10 - 1.58) / 9, abs=1e-2)
    w = molecules.molecule_rewards([ASPIRIN], "weighted", {"qed": 2.0, "sa": 1.0, "validity": 0.5})[0]
    assert w == pytest.approx(2 * qed + (10 - sa) / 9 + 0.5)


@pytest.mark.parametrize("name", molecules.REWARD_NAMES)
def test_invalid_molecules_get_the_sentinel_never_an_exception(name):
    bad = [None, "", "C1CC", "not a smiles", "C(C)(C)(C)(C)C"]  # unclosed ring, pentavalent carbon
    r = molecules.molecule_rewards(bad + ["CCO"], name, {"qed": 1.0})
    assert list(r[:-1]) == [molecules.INVALID_REWARD] * len(bad)
    assert r[-1] > molecules.INVALID_REWARD and np.isfinite(r).all()


def test_unknown_reward_name_and_bad_weights_are_refused():
    with pytest.raises(ValueError, match="valid"):
        molecules.molecule_rewards(["C"], "logp")
    with pytest.raises(ValueError, match="weights"):
        molecules.molecule_rewards(["C"], "weighted", {"logp": 1.0})


def test_qm9_molecules_round_trip_through_the_graph_representation():
    smiles = qm9_smiles()[:20000:40]  # 500 molecules across the file
    from rdkit import Chem

    encoded = [(s, mol_graph.encode_smiles(s)) for s in smiles]
    fits = [(s, x) for s, x in encoded if x is not None]
    assert len(fits) >= 0.98 * len(smiles)
    x = np.stack([x for _, x in fits])
    assert x.shape[1] == mol_graph.NUM_FEATURES and set(np.unique(x)) == {-1.0, 1.0}
    assert mol_graph.canonical_smiles(x) == [Chem.CanonSmiles(s) for s, _ in fits]


def test_charged_molecules_do_not_fit_and_noise_decodes_without_errors():
    assert mol_graph.encode_smiles("[NH3+]CCC([O-])=O") is None
    assert mol_graph.encode_smiles("CCCCCCCCCC") is None  # 10 heavy atoms
    assert mol_graph.encode_smiles("CCl") is None
    noise = np.random.default_rng(0).normal(size=(200, mol_graph.NUM_FEATURES))
    assert len(mol_graph.canonical_smiles(noise)) == 200
    empty = -np.ones((1, mol_graph.NUM_FEATURES))  # no atom class set anywhere: argmax says "no atom"
    assert mol_graph.canonical_smiles(empty) == [None]


def test_disconnected_graph_is_invalid():
    a, b = mol_graph.encode_smiles("CC"), mol_graph.encode_smiles("O")
    atoms_a, bonds_a = mol_graph.split_features(a[None])
    atoms_b, _ = mol_graph.split_features(b[None])
    atoms = atoms_a.copy()
    atoms[0, 2] = atoms_b[0, 0]  # a third atom (O) with no bond: ethane + water
    x = np.concatenate([atoms.reshape(1, -1), bonds_a.reshape(1, -1)], axis=1)
    assert mol_graph.canonical_smiles(x) == [None]


@pytest.fixture
def domain():
    return Qm9Domain(Qm9Params())


def _graphs(smiles):
    return np.stack([mol_graph.encode_smiles(s) for s in smiles])


def test_dedup_keys_are_canonical_smiles_equal_for_duplicates(domain):
    x = _graphs(["OCC", "CCO", "C1CC1", "C(C)O"])
    garbage = np.ones((1, mol_graph.NUM_FEATURES))  # all classes tie: argmax picks "no atom" everywhere
    keys = domain.dedup_keys(np.concatenate([x, garbage, garbage]))
    assert keys[:4] == ["CCO", "CCO", "C1CC1", "CCO"]
    assert keys[4:] == [INVALID_KEY, INVALID_KEY]


def test_extra_metrics_on_a_hand_made_set(domain):
    domain._train_canonical = frozenset({"CCO", "C1CC1"})  # a known training set
    x = _graphs(["CCO", "OCC", "C1CC1", "CC#N", "CC(=O)O"])
    garbage = np.ones((1, mol_graph.NUM_FEATURES))
    m = domain.extra_metrics(np.concatenate([x, garbage]))
    assert m["validity"] == pytest.approx(5 / 6)
    assert m["uniqueness"] == pytest.approx(4 / 5)  # CCO twice
    assert m["novelty"] == pytest.approx(2 / 4)  # CC#N and CC(=O)O are new
    props = [molecules.properties(s) for s in ("C1CC1", "CC#N", "CC(=O)O", "CCO")]
    assert m["qed_mean"] == pytest.approx(np.mean([q for q, _ in props]))
    assert m["sa_mean"] == pytest.approx(np.mean([s for _, s in props]))
    nothing = domain.extra_metrics(garbage)
    assert nothing == {"validity": 0.0, "uniqueness": 0.0, "novelty": 0.0, "qed_mean": 0.0, "sa_mean": 0.0}


def test_reward_of_samples_uses_the_configured_reward(domain):
    x = np.concatenate([_graphs(["CCO"]), np.ones((1, mol_graph.NUM_FEATURES))])
    r = domain.reward(x)
    assert r[0] == pytest.approx(molecules.properties("CCO")[0]) and r[1] == molecules.INVALID_REWARD


def test_split_is_fixed_and_disjoint(domain):
    train, test = domain.split()
    assert len(train) + len(test) == len(qm9_smiles()) and len(test) == round(0.1 * len(qm9_smiles()))
    assert domain.split()[1][:5] == test[:5]


def test_novelty_reference_travels_with_the_base_model(domain, tmp_path):
    domain._train_canonical = frozenset({"CCO"})
    domain.train_auxiliary(tmp_path / "aux", None)
    again = Qm9Domain(Qm9Params())
    again.load_auxiliary(tmp_path / "aux")
    assert again.train_canonical() == frozenset({"CCO"})


def test_gallery_draws_valid_and_invalid_samples(domain):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    domain.draw(ax, np.concatenate([_graphs(["CCO", "c1ccccc1"]), np.ones((1, mol_graph.NUM_FEATURES))]))
    assert ax.images
    plt.close(fig)
