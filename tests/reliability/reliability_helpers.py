"""Helpers for the reliability tests."""

from __future__ import annotations

import hashlib
from pathlib import Path


def readable(path: Path) -> str | None:
    """A digest of a complete output (file or directory tree); None when it does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()
