"""CPU smoke runs of the real stage commands on a shrunk params file; determinism; artifact checks."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pgraft.stages import evaluate, finetune

from pipeline_helpers import write_params
from pipeline_helpers import run_all, stage_commands


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, real_params):
    from pipeline_helpers import shrink

    work = tmp_path_factory.mktemp("pipe")
    params = shrink(real_params)
    write_params(work / "params.yaml", params)
    mp = pytest.MonkeyPatch()
    mp.chdir(work)
    mp.setenv("PGRAFT_STATE_DIR", str(work / ".pgraft"))
    run_all(params, work)
    yield work, params
    mp.undo()


def test_every_stage_writes_its_outputs(pipeline):
    work, params = pipeline
    figs = sorted(p.name for p in (work / "results/figures").iterdir())
    for name in ("gaussian_reward_vs_k.png", "gaussian_reward_vs_k.pdf", "gaussian_distance_vs_k.png",
                 "gaussian_tradeoff.png", "acceptance_law.png", "gaussian_table.md",
                 "digits_flow_fid_vs_flops.png", "digits_flow_fid_vs_flops.pdf", "digits_flow_inc_table.md",
                 "gaussian_ceiling_vs_k.png", "gaussian_decomposition.md", "conditional_variance.png"):
        assert name in figs
    table = pd.read_csv(work / "results/summary.csv")
    ev = table[table["kind"] == "evaluate"]
    assert set(ev["k"]) == set(params["truncation_grid"]) and set(ev["budget"]) == set(params["finetune"]["budgets"])
    assert set(ev["seed"]) == set(params["seeds"])
    assert np.isfinite(ev["value"]).all()
    assert set(table["kind"]) >= {"evaluate", "acceptance", "acceptance_mc", "filter", "pretrain", "reference",
                                  "inc", "invert", "variance", "ceiling"}
    ceil = table[(table["kind"] == "ceiling") & (table["metric"] == "ceiling")]
    assert set(ceil["k"]) == set(params["truncation_grid"]) and np.isfinite(ceil["value"]).all()
    inc = table[table["kind"] == "inc"]
    assert set(inc["rule"]) == {"base", "inc"} and np.isfinite(inc["value"]).all()
    samples = np.load(work / "results/gaussian/seed0/samples.npz", allow_pickle=False)
    for k in params["truncation_grid"]:
        assert samples[f"state_k{k}"].shape == samples["x0"].shape
    assert np.array_equal(samples["state_k4"], samples["x0"])
    md = (work / "results/figures/gaussian_table.md").read_text()
    assert "Paired comparison against GRAFT" in md and "[95 % t interval" in md and "paired t test" in md


def test_base_truncation_point_is_the_base_model(pipeline):
    work, params = pipeline
    ev = json.loads((work / "results/metrics/gaussian/seed0/k0/evaluate.json").read_text())
    b = [ev[f"b{b}"] for b in params["finetune"]["budgets"]]
    assert all(x == b[0] for x in b)  # k = 0 never queries a fine-tuned model


def test_stages_are_deterministic(pipeline, tmp_path, monkeypatch):
    work, params = pipeline
    monkeypatch.chdir(work)
    before = hashlib.sha256((work / "results/metrics/gaussian/seed1/k2/evaluate.json").read_bytes()).hexdigest()
    for mod, args in stage_commands(params):
        if mod in (finetune, evaluate) and "--seed" in args and args[args.index("--seed") + 1] == "1" \
                and args[args.index("--k") + 1] == "2":
            assert mod.main(args) == 0
    after = hashlib.sha256((work / "results/metrics/gaussian/seed1/k2/evaluate.json").read_bytes()).hexdigest()
    assert before == after


def test_artifact_from_another_domain_or_missing_is_refused(pipeline, monkeypatch, capsys):
    work, params = pipeline
    monkeypatch.chdir(work)
    bad = work / "bad.npz"
    np.savez(bad, x0=np.zeros((4, 2)), domain=np.asarray("digits"))
    code = evaluate.main(["--domain", "gaussian", "--seed", "0", "--k", "0", "--model", "results/gaussian/base",
                          "--finetuned", "results/gaussian/seed0/k0/finetuned", "--reference", str(bad),
                          "--rewards", "results/gaussian/seed0/rewards.parquet", "--out", "x.json",
                          "--gallery", "g.npz"])
    err = capsys.readouterr().err
    assert code == 2 and "digits" in err and not (work / "x.json").exists()
    code = finetune.main(["--domain", "gaussian", "--seed", "0", "--k", "2", "--model", "results/gaussian/base",
                          "--samples", "nope.npz", "--selection", "results/gaussian/seed0/selection.parquet",
                          "--out", "ft"])
    assert code == 2 and "nope.npz" in capsys.readouterr().err and not (work / "ft").exists()
    code = finetune.main(["--domain", "gaussian", "--seed", "0", "--k", "3", "--model", "results/gaussian/base",
                          "--samples", "x", "--selection", "y", "--out", "ft"])
    assert code == 2 and "truncation_grid" in capsys.readouterr().err


def test_cli_help_lists_the_stages():
    out = subprocess.run([sys.executable, "-m", "pgraft.cli", "--help"], capture_output=True, text=True, check=True)
    for stage in ("pretrain", "sample", "reward", "filter", "finetune", "ddpo", "evaluate", "aggregate", "figures"):
        assert stage in out.stdout


def test_pretrain_is_deterministic(pipeline, monkeypatch):
    from pgraft.stages import pretrain

    work, _ = pipeline
    monkeypatch.chdir(work)
    for out in ("again1", "again2"):
        assert pretrain.main(["--domain", "gaussian", "--out", out, "--metrics", f"{out}.json"]) == 0
    a, b = (work / "again1/model.safetensors").read_bytes(), (work / "again2/model.safetensors").read_bytes()
    assert a == b == (work / "results/gaussian/base/model.safetensors").read_bytes()


@pytest.mark.parametrize("domain", ["gaussian", "digits_t2i"])  # digits_t2i: a reward with its own networks
def test_finetune_with_several_graft_rounds(pipeline, monkeypatch, domain):
    """rounds > 1: later rounds re-sample the current stitched model, re-score and re-filter."""
    import copy

    work, params = pipeline
    monkeypatch.chdir(work)
    rounds = copy.deepcopy(params)
    rounds["finetune"]["rounds"] = 2
    write_params(work / "rounds.yaml", rounds)
    args = next(a for m, a in stage_commands(rounds, "rounds.yaml")
                if m is finetune and a[a.index("--domain") + 1] == domain and a[a.index("--k") + 1] == "2"
                and a[a.index("--seed") + 1] == "0")
    args = list(args)
    out = f"rounds_ft_{domain}"
    args[args.index("--out") + 1] = out
    assert finetune.main(args) == 0
    for b in params["finetune"]["budgets"]:
        assert (work / out / f"b{b}.safetensors").exists()
    one = (work / f"results/{domain}/seed0/k2/finetuned/b10.safetensors").read_bytes()
    assert (work / out / "b10.safetensors").read_bytes() != one


def test_pretrain_trains_independent_bases_and_each_seed_uses_its_own(pipeline, tmp_path):
    import torch

    from pgraft.checkpoints import base_name
    from pgraft.io import load_weights, write_json

    work, params = pipeline
    base = work / "results/gaussian/base"
    assert params["base_models"] == 2 and json.loads((base / "config.json").read_text())["base_models"] == 2
    a, b = (load_weights(base / f"{n}.safetensors") for n in ("model", "model_base1"))
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)  # trained apart
    pre = json.loads((work / "results/metrics/gaussian/pretrain.json").read_text())
    assert np.isfinite([pre["final_loss"], pre["final_loss_base1"]]).all() and pre["base_models"] == 2
    assert [base_name(base, s) for s in range(5)] == ["model", "model_base1", "model", "model_base1", "model"]
    flow = json.loads((work / "results/digits_flow/base/config.json").read_text())
    assert flow.get("base_models", 1) == 1  # a flow domain has one base (INC inverts it once)
    from pgraft import domains
    from pgraft.checkpoints import load_base
    from pgraft.config import parse_params
    from pgraft.errors import ArtifactError

    partial = tmp_path / "base"
    shutil.copytree(base, partial)
    (partial / "model_base1.safetensors").unlink()
    domain = domains.build("gaussian", parse_params(params))
    assert load_base(partial, domain, 2) is not None  # seed 2: base 0
    with pytest.raises(ArtifactError, match="model_base1.safetensors"):
        load_base(partial, domain, 3)  # seed 3: base 1, whose weights are gone
    single = tmp_path / "single"
    single.mkdir()
    write_json(single / "config.json", {"domain": "gaussian"})  # written before base_models existed: one base
    assert base_name(single, 3) == "model"
