"""QM9 molecules as fixed-size graphs: atom-type and bond-type one-hots scaled to ±1, and back by argmax.

Layout of one sample (a flat float vector of size NUM_FEATURES = 9·5 + 36·4 = 189):
  atoms: MAX_ATOMS rows of ATOM_CLASSES one-hots (class 0 = no atom), then
  bonds: one BOND_CLASSES one-hot per atom pair i < j (row-major upper triangle; class 0 = no bond).
Hydrogens are implicit; aromatic rings are kekulized, so single/double/triple suffice. Atoms are in the
order of the molecule's canonical SMILES, padding ("no atom") at the end.
"""

from __future__ import annotations

import numpy as np

MAX_ATOMS = 9
ATOM_CLASSES = (None, "C", "N", "O", "F")
BOND_CLASSES = (None, "SINGLE", "DOUBLE", "TRIPLE")
PAIRS = np.stack(np.triu_indices(MAX_ATOMS, k=1), axis=1)  # (36, 2): i < j
NUM_ATOM_FEATURES = MAX_ATOMS * len(ATOM_CLASSES)
NUM_FEATURES = NUM_ATOM_FEATURES + len(PAIRS) * len(BOND_CLASSES)


def _bond_types():
    from rdkit import Chem

    return (None, Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE)


def encode_smiles(smiles: str) -> np.ndarray | None:
    """The ±1 graph vector of a molecule, or None if it does not fit the representation (a charged atom,
    an element outside C/N/O/F, more than MAX_ATOMS heavy atoms, explicit radicals)."""
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    if not 0 < mol.GetNumAtoms() <= MAX_ATOMS:
        return None
    Chem.MolToSmiles(mol)  # computes the canonical atom order, then atoms are renumbered in that order
    mol = Chem.RenumberAtoms(mol, list(mol.GetPropsAsDict(True, True)["_smilesAtomOutputOrder"]))
    Chem.Kekulize(mol, clearAromaticFlags=True)
    atoms = np.zeros((MAX_ATOMS, len(ATOM_CLASSES)), dtype=np.float32)
    atoms[:, 0] = 1.0
    for a in mol.GetAtoms():
        if a.GetSymbol() not in ATOM_CLASSES[1:] or a.GetFormalCharge() != 0 or a.GetNumRadicalElectrons():
            return None
        atoms[a.GetIdx()] = 0.0
        atoms[a.GetIdx(), ATOM_CLASSES.index(a.GetSymbol())] = 1.0
    bond_types = _bond_types()
    adj = np.zeros((MAX_ATOMS, MAX_ATOMS), dtype=np.int64)
    for b in mol.GetBonds():
        if b.GetBondType() not in bond_types[1:]:
            return None
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        adj[i, j] = adj[j, i] = bond_types.index(b.GetBondType())
    bonds = np.eye(len(BOND_CLASSES), dtype=np.float32)[adj[PAIRS[:, 0], PAIRS[:, 1]]]
    return np.concatenate([atoms.ravel(), bonds.ravel()]) * 2.0 - 1.0


def split_features(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(atom scores (n, MAX_ATOMS, ATOM_CLASSES), bond scores (n, pairs, BOND_CLASSES)) of flat vectors."""
    x = np.asarray(x, dtype=np.float32).reshape(len(x), NUM_FEATURES)
    atoms = x[:, :NUM_ATOM_FEATURES].reshape(len(x), MAX_ATOMS, len(ATOM_CLASSES))
    return atoms, x[:, NUM_ATOM_FEATURES:].reshape(len(x), len(PAIRS), len(BOND_CLASSES))


def decode(x: np.ndarray) -> list:
    """RDKit molecules of flat graph vectors by argmax; None where the graph is not one valid molecule:
    no atoms, sanitisation fails (e.g. a valence exceeded) or it falls apart into several fragments."""
    from rdkit import Chem

    atom_cls, bond_cls = (a.argmax(-1) for a in split_features(x))
    bond_types = _bond_types()
    mols = []
    for atoms, bonds in zip(atom_cls, bond_cls):
        present = np.flatnonzero(atoms)
        if len(present) == 0:
            mols.append(None)
            continue
        mol = Chem.RWMol()
        index = {}
        for i in present:
            index[i] = mol.AddAtom(Chem.Atom(ATOM_CLASSES[atoms[i]]))
        for (i, j), c in zip(PAIRS, bonds):
            if c and i in index and j in index:  # a bond to an absent atom is ignored
                mol.AddBond(index[i], index[j], bond_types[c])
        try:
            Chem.SanitizeMol(mol)
        except (ValueError, RuntimeError):  # Chem.MolSanitizeException and its kin
            mols.append(None)
            continue
        mols.append(mol if len(Chem.GetMolFrags(mol)) == 1 else None)
    return mols


def canonical_smiles(x: np.ndarray) -> list[str | None]:
    """Canonical SMILES of each decoded sample (None: not a valid molecule)."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    return [None if m is None else Chem.MolToSmiles(m) for m in decode(x)]
