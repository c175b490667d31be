"""Nothing unsafe is loaded: no pickle in any artifact, and a crafted pickle payload is refused unrun."""

from __future__ import annotations

import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from pgraft.io import ArtifactError, load_weights, read_npz
from pgraft.stages import finetune

from pipeline_helpers import ROOT, stage_commands


class _Payload:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_pickle_payload_in_place_of_a_checkpoint_is_refused(prepared, monkeypatch, capsys, tmp_path):
    work, params = prepared
    monkeypatch.chdir(work)
    marker = tmp_path / "payload_ran"
    base = tmp_path / "base"
    shutil.copytree(work / "results/gaussian/base", base)
    (base / "model.safetensors").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ArtifactError, match="safetensors"):
        load_weights(base / "model.safetensors")
    args = next(a for m, a in stage_commands(params) if m is finetune and a[a.index("--k") + 1] == "2")
    args = list(args)
    args[args.index("--model") + 1] = str(base)
    args[args.index("--out") + 1] = str(tmp_path / "ft")
    assert finetune.main(args) == 2
    assert "safetensors" in capsys.readouterr().err
    assert not marker.exists(), "the pickle payload was executed"
    import torch  # the same payload through torch's safe loader is refused too

    (tmp_path / "model.pt").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(Exception):
        torch.load(tmp_path / "model.pt", weights_only=True)
    assert not marker.exists()


def test_object_arrays_in_npz_are_refused(tmp_path):
    marker = tmp_path / "payload_ran"
    np.savez(tmp_path / "evil.npz", x0=np.array([_Payload(marker)], dtype=object))
    with pytest.raises(ArtifactError, match="not a readable npz"):
        read_npz(tmp_path / "evil.npz")
    assert not marker.exists()


def test_no_pickle_in_any_pipeline_artifact(prepared):
    work, _ = prepared
    files = [p for p in (work / "results").rglob("*") if p.is_file()]
    assert files
    for f in files:
        assert f.suffix not in (".pt", ".pth", ".pkl", ".pickle", ".bin"), f
        head = f.read_bytes()[:2]
        assert not (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")), f"{f} is a pickle"
        if f.suffix == ".npz":
            read_npz(f)  # loads with allow_pickle=False


def test_source_never_loads_pickle():
    unsafe = [
        (r"\bimport pickle\b|\bfrom pickle\b|\bcloudpickle\b|\bdill\b", "pickle module"),
        (r"allow_pickle\s*=\s*True", "np.load with allow_pickle=True"),
        (r"read_pickle|joblib\.load", "pickle-based loader"),
        (r"torch\.load\((?![^)]*weights_only\s*=\s*True)", "torch.load without weights_only=True"),
        (r"np\.load\((?![^)]*allow_pickle\s*=\s*False)", "np.load without allow_pickle=False"),
    ]
    offenders = []
    for path in (ROOT / "src").rglob("*.py"):
        text = path.read_text()
        for pattern, what in unsafe:
            if re.search(pattern, text):
                offenders.append(f"{path.relative_to(ROOT)}: {what}")
    assert not offenders, offenders
