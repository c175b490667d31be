"""Metrics: distances between sample sets (distances.py), diversity (diversity.py), and the exact
GRS-tilted target (tilt.py). Import the submodules directly; tilt.py does not import torch."""
