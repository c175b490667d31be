"""Atomic, pickle-free artifact I/O: npz, JSON, parquet/CSV tables and safetensors weights."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from pgraft.errors import ArtifactError  # noqa: F401 (also importable from here, its former home)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `path` only if the block succeeds.

    A killed or failing writer leaves the old file (or nothing), never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces `path` as a whole on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(work: str | os.PathLike, path: str | os.PathLike) -> None:
    """Move a finished work directory onto `path` (the old `path`, if any, goes only once it is replaced)."""
    work, path = Path(work), Path(path)
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(work, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, path)


def file_digest(path: str | os.PathLike) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = _existing(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ArtifactError(f"{path}: not valid JSON ({err})") from err


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})


def read_npz(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Read an npz without pickle; check that the `required` arrays are present."""
    path = _existing(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            out = {k: data[k] for k in data.files}
    except Exception as err:  # zipfile, numpy and OS errors: a truncated or foreign file
        raise ArtifactError(f"{path}: not a readable npz archive ({type(err).__name__}: {err})") from err
    missing = [k for k in required if k not in out]
    if missing:
        raise ArtifactError(f"{path}: missing arrays {missing}; has {sorted(out)}")
    return out


def write_table(path: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame as parquet or CSV, by the path's suffix."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        elif path.suffix == ".csv":
            frame.to_csv(tmp, index=False, float_format="%.6g")
        else:
            raise ValueError(f"{path}: unsupported table format (use .parquet or .csv)")


def read_table(path: str | os.PathLike, columns: tuple[str, ...] = ()):
    import pandas as pd

    path = _existing(path)
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as err:  # pyarrow and pandas raise many kinds
        raise ArtifactError(f"{path}: not a readable table ({err})") from err
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ArtifactError(f"{path}: missing columns {missing}; has {list(frame.columns)}")
    return frame


def save_weights(path: str | os.PathLike, state: dict, metadata: dict | None = None) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous() for k, v in state.items()}, str(tmp),
                  metadata={k: json.dumps(v) for k, v in (metadata or {}).items()})


def load_weights(path: str | os.PathLike) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = _existing(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ArtifactError(f"{path}: not a readable safetensors file ({err})") from err


def _existing(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: file not found (run the stage that produces it first)")
    return path
