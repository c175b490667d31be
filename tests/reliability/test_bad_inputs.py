"""Bad artifacts, rewards and paths: a clear error naming the problem (never a bare traceback), or a
documented handling; no earlier result is lost or overwritten."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pgraft.stages import aggregate, evaluate, figures, filter as filter_stage, finetune, reward, sample

from pipeline_helpers import stage_commands, write_params

SEED, K = "0", "2"


def _args(params, mod):
    for m, args in stage_commands(params):
        if m is mod and ("--seed" not in args or args[args.index("--seed") + 1] == SEED) and \
                ("--k" not in args or args[args.index("--k") + 1] == K):
            return list(args)
    raise AssertionError(mod)


def _set(args, flag, value):
    args[args.index(flag) + 1] = str(value)
    return args


def _npz(src: Path, dst: Path, **changes):
    data = dict(np.load(src, allow_pickle=False))
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    np.savez(dst, **data)
    return dst


def _truncate(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes()[: max(1, src.stat().st_size // 2)])
    return dst


def _copy_dir(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


S = f"results/gaussian/seed{SEED}"
BASE = "results/gaussian/base"


def case_samples(**changes):
    return lambda w, a: _set(a, "--samples", _npz(w / S / "samples.npz", w / "case/samples.npz", **changes))


CASES = [
    # (id, stage, mutate(work, args) -> args, words expected in the error)
    ("samples missing", finetune, lambda w, a: _set(a, "--samples", w / "case/none.npz"), ["none.npz", "not found"]),
    ("samples truncated", finetune, lambda w, a: _set(a, "--samples", _truncate(w / S / "samples.npz", w / "case/t.npz")),
     ["t.npz", "not a readable npz"]),
    ("samples not an archive", finetune,
     lambda w, a: (Path(w / "case/text.npz").write_text("hello"), _set(a, "--samples", w / "case/text.npz"))[1],
     ["text.npz", "not a readable npz"]),
    ("samples from another domain", finetune, case_samples(domain=np.asarray("digits")), ["digits", "gaussian"]),
    ("samples wrong shape", finetune, case_samples(x0=np.zeros((256, 3), np.float32)), ["shape", "(256, 3)"]),
    ("samples wrong dtype", finetune, case_samples(x0=np.zeros((128, 2), np.int64)), ["dtype", "int64"]),
    ("samples empty", finetune, case_samples(x0=np.zeros((0, 2), np.float32)), ["no samples"]),
    ("samples lack the state at k", finetune, case_samples(**{f"state_k{K}": None}), ["no state for k=2"]),
    ("samples from another sampler grid", finetune, case_samples(timesteps=np.arange(7)), ["7 sampler steps"]),
    ("selection truncated", finetune,
     lambda w, a: _set(a, "--selection", _truncate(w / S / "selection.parquet", w / "case/sel.parquet")),
     ["sel.parquet", "not a readable table"]),
    ("selection missing column", finetune,
     lambda w, a: (pd.read_parquet(w / S / "selection.parquet").drop(columns="keep").to_parquet(w / "case/s.parquet"),
                   _set(a, "--selection", w / "case/s.parquet"))[1], ["missing columns", "keep"]),
    ("selection of another sample set", finetune,
     lambda w, a: (pd.read_parquet(w / S / "selection.parquet").head(10).to_parquet(w / "case/s.parquet"),
                   _set(a, "--selection", w / "case/s.parquet"))[1], ["10 rows", "rerun filter"]),
    ("base weights truncated", finetune,
     lambda w, a: (_copy_dir(w / BASE, w / "case/base"),
                   _truncate(w / BASE / "model.safetensors", w / "case/base/model.safetensors"),
                   _set(a, "--model", w / "case/base"))[-1], ["model.safetensors", "safetensors"]),
    ("base config corrupt", finetune,
     lambda w, a: (_copy_dir(w / BASE, w / "case/base"), (w / "case/base/config.json").write_text("{oops"),
                   _set(a, "--model", w / "case/base"))[-1], ["config.json", "not valid JSON"]),
    ("base model of another domain", finetune,
     lambda w, a: (_copy_dir(w / BASE, w / "case/base"),
                   (w / "case/base/config.json").write_text(json.dumps({"domain": "digits", "model": {}})),
                   _set(a, "--model", w / "case/base"))[-1], ["digits"]),
    ("base weights of another architecture", finetune,
     lambda w, a: (_copy_dir(w / BASE, w / "case/base"),
                   (w / "case/base/config.json").write_text(json.dumps(
                       {"domain": "gaussian", "model": {"dim": 2, "hidden": 7, "layers": 1, "t_dim": 32}})),
                   _set(a, "--model", w / "case/base"))[-1], ["do not fit"]),
    ("base model directory missing", sample, lambda w, a: _set(a, "--model", w / "case/nobase"), ["nobase", "not found"]),
    ("finetuned directory missing", evaluate, lambda w, a: _set(a, "--finetuned", w / "case/noft"), ["noft", "not found"]),
    ("finetuned budget checkpoint missing", evaluate,
     lambda w, a: (_copy_dir(w / S / f"k{K}/finetuned", w / "case/ft"), (w / "case/ft/b20.safetensors").unlink(),
                   _set(a, "--finetuned", w / "case/ft"))[-1], ["b20.safetensors", "not found"]),
    ("reference of another domain", evaluate,
     lambda w, a: _set(a, "--reference", _npz(w / S / "reference.npz", w / "case/r.npz", domain=np.asarray("qm9"))),
     ["qm9"]),
    ("reward NaN from NaN samples", reward,
     lambda w, a: _set(a, "--samples", _npz(w / S / "samples.npz", w / "case/n.npz",
                                            x0=np.full((128, 2), np.nan, np.float32))), ["not finite", "NaN 128"]),
    ("reward inf from inf samples", reward,
     lambda w, a: _set(a, "--samples", _npz(w / S / "samples.npz", w / "case/i.npz",
                                            x0=np.full((128, 2), np.inf, np.float32))), ["not finite"]),
    ("rewards table with NaN", filter_stage,
     lambda w, a: (pd.read_parquet(w / S / "rewards.parquet").assign(reward=np.nan).to_parquet(w / "case/r.parquet"),
                   _set(a, "--rewards", w / "case/r.parquet"))[1], ["NaN or inf"]),
    ("rewards table with inf", filter_stage,
     lambda w, a: (pd.read_parquet(w / S / "rewards.parquet").assign(reward=np.inf).to_parquet(w / "case/r.parquet"),
                   _set(a, "--rewards", w / "case/r.parquet"))[1], ["NaN or inf"]),
    ("rewards table without reference rows", filter_stage,
     lambda w, a: (pd.read_parquet(w / S / "rewards.parquet").query("set == 'train'").to_parquet(w / "case/r.parquet"),
                   _set(a, "--rewards", w / "case/r.parquet"))[1], ["no reference rewards"]),
    ("metrics of a seed missing", aggregate,
     lambda w, a: (_copy_dir(w / "results/metrics", w / "case/m"), (w / f"case/m/gaussian/seed{SEED}/k{K}/evaluate.json").unlink(),
                   _set(a, "--metrics-dir", w / "case/m"))[-1], ["evaluate.json", "not found"]),
    ("metrics of another budget list", aggregate,
     lambda w, a: (_copy_dir(w / "results/metrics", w / "case/m"),
                   (w / f"case/m/gaussian/seed{SEED}/k{K}/evaluate.json").write_text('{"b999": {}}'),
                   _set(a, "--metrics-dir", w / "case/m"))[-1], ["no budget"]),
    ("summary table empty", figures,
     lambda w, a: ((w / "case/s.csv").write_text(""), _set(a, "--summary", w / "case/s.csv"))[1],
     ["s.csv", "not a readable table"]),
    ("summary table of another kind", figures,
     lambda w, a: ((w / "case/s.csv").write_text("a,b\n1,2\n"), _set(a, "--summary", w / "case/s.csv"))[1],
     ["missing columns"]),
    ("params path is a directory", finetune, lambda w, a: _set(a, "--params", w / "case"), ["cannot read"]),
    ("params path missing", finetune, lambda w, a: _set(a, "--params", w / "case/nope.yaml"), ["nope.yaml", "not found"]),
    ("seed outside params", finetune, lambda w, a: _set(a, "--seed", 99), ["--seed 99", "seeds"]),
    ("domain outside params", reward, lambda w, a: _set(a, "--domain", "digits"), ["digits", "domains"]),
]


@pytest.mark.parametrize("name,mod,mutate,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_a_clear_error_and_keeps_earlier_results(prepared, tmp_path, monkeypatch, capsys,
                                                                 name, mod, mutate, words):
    work, params = prepared
    monkeypatch.chdir(work)
    case = work / "case"
    shutil.rmtree(case, ignore_errors=True)
    case.mkdir()
    args = mutate(work, _args(params, mod))
    # an earlier result sits where the output goes: it must survive the failed run untouched
    out = Path(args[args.index("--out") + 1])
    earlier = {p: p.read_bytes() for p in ([out] if out.is_file() else out.rglob("*") if out.is_dir() else [])
               if p.is_file()}
    code = mod.main(args)
    err = capsys.readouterr().err
    assert code == 2, f"{name}: exit {code}\n{err}"
    assert "Traceback" not in err and "error:" in err
    for w in words:
        assert w in err, f"{name}: {w!r} not in {err!r}"
    assert earlier and all(p.read_bytes() == b for p, b in earlier.items()), f"{name}: an earlier result changed"


def test_all_equal_rewards_keep_exactly_k_per_group(prepared, monkeypatch, capsys):
    """Documented handling of ties: the rule breaks them by sample index, so exactly k per group."""
    work, params = prepared
    monkeypatch.chdir(work)
    (work / "case2").mkdir(exist_ok=True)
    pd.read_parquet(work / S / "rewards.parquet").assign(reward=1.0).to_parquet(work / "case2/eq.parquet")
    args = _set(_args(params, filter_stage), "--rewards", work / "case2/eq.parquet")
    for flag, name in (("--out", "sel.parquet"), ("--acceptance", "acc.csv"), ("--metrics", "f.json")):
        _set(args, flag, work / "case2" / name)
    assert filter_stage.main(args) == 0
    sel = pd.read_parquet(work / "case2/sel.parquet")
    assert (sel.groupby("group")["keep"].sum() == params["filter"]["params"]["k"]).all()


def test_filter_that_accepts_nothing_is_an_error(prepared, monkeypatch, capsys):
    work, params = prepared
    monkeypatch.chdir(work)
    strict = {**params, "filter": {"name": "threshold", "params": {"tau": 1e9}}}
    write_params(work / "strict.yaml", strict)
    args = _set(_args(params, filter_stage), "--params", "strict.yaml")
    for flag, name in (("--out", "sel.parquet"), ("--acceptance", "acc.csv"), ("--metrics", "f.json")):
        _set(args, flag, work / "case3" / name)
    assert filter_stage.main(args) == 2
    assert "accepted no sample" in capsys.readouterr().err
    assert not (work / "case3/sel.parquet").exists()
