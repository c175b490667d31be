"""The two engines: DVC and Snakemake run the same stage commands over the same DAG, end to end."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from pgraft.config import parse_params

from pipeline_helpers import BIN, ROOT, engine_shrink, project_copy as _project_copy, run_cmd as _run


def _norm(cmd: str) -> str:
    cmd = re.sub(r"\s*>\s*\S+\s+2>&1\s*$", "", cmd.strip())  # Snakemake's per-rule log redirect
    return " ".join(cmd.split())


def dvc_commands(repo: Path) -> set[str]:
    code = ("import sys; from dvc.repo import Repo\n"
            "for s in Repo(sys.argv[1]).index.stages:\n"
            "    print(s.cmd.replace('\\n', ' ') if isinstance(s.cmd, str) else ' && '.join(s.cmd))")
    return {_norm(c) for c in _run([sys.executable, "-c", code, str(repo)], repo).splitlines() if c.strip()}


def dvc_outputs(repo: Path) -> set[str]:
    code = ("import sys; from dvc.repo import Repo\n"
            "for s in Repo(sys.argv[1]).index.stages:\n"
            "    [print(o.def_path) for o in s.outs]")
    return set(_run([sys.executable, "-c", code, str(repo)], repo).split())


def snakemake_commands(repo: Path) -> set[str]:
    out = _run([f"{BIN}/snakemake", "-n", "--forceall", "-p", "--profile", "workflow/profiles/local"], repo)
    marker = "python -m pgraft.stages."
    return {_norm(line[line.index(marker):]) for line in out.splitlines() if marker in line}


def snakemake_outputs(repo: Path) -> set[str]:
    out = _run([f"{BIN}/snakemake", "--forceall", "--detailed-summary", "--profile", "workflow/profiles/local"], repo)
    rows = [line.split("\t") for line in out.splitlines() if "\t" in line]
    return {r[0] for r in rows[1:] if r[0].startswith("results/")}


@pytest.mark.slow
def test_dvc_stages_and_snakemake_rules_agree(tmp_path):
    """Same commands (hence same stage set, arguments and output paths) on the real params.yaml."""
    repo = _project_copy(tmp_path, None)
    dvc, smk = dvc_commands(repo), snakemake_commands(repo)
    assert dvc == smk, f"only in DVC: {sorted(dvc - smk)[:5]}\nonly in Snakemake: {sorted(smk - dvc)[:5]}"
    p = parse_params(yaml.safe_load((repo / "params.yaml").read_text()))  # the domain lists, defaults resolved
    seeds, grid, inc = len(p.seeds), len(p.truncation_grid), p.inc
    flow = len(inc.domains) * (1 + len(inc.corrected_steps) * (1 + seeds) + seeds)
    ddpo = 2 * len(p.ddpo.domains) * seeds  # ddpo + evaluate_ddpo per seed
    # per reward domain: pretrain; sample, reward, filter, variance per seed; finetune, evaluate per (seed, k)
    assert len(dvc) == len(p.reward_domains) * (1 + 4 * seeds + 2 * seeds * grid) + flow + ddpo + 3  # + validate
    outs = {o.rstrip("/") for o in dvc_outputs(repo)}
    smk_outs = {o.rstrip("/") for o in snakemake_outputs(repo)}
    missing = {o for o in outs if not any(o == s or o.startswith(s + "/") for s in smk_outs)}  # dirs cover files
    assert not missing, sorted(missing)[:5]


@pytest.fixture(scope="module")
def engine_runs(tmp_path_factory, real_params):
    params = engine_shrink(real_params)
    dvc_repo = _project_copy(tmp_path_factory.mktemp("dvc"), params)
    _run([f"{BIN}/dvc", "repro"], dvc_repo)
    smk_repo = _project_copy(tmp_path_factory.mktemp("smk"), params)
    # as `make repro` runs it: every stage forked from the warm stage server (the DVC run starts each one cold)
    out = _run([f"{BIN}/pgraft", "warm", f"{BIN}/snakemake", "--profile", "workflow/profiles/local"], smk_repo)
    assert "stage server up" in out and "ran cold" not in out and "pgraft warm: served 0 " not in out, out[-2000:]
    return dvc_repo, smk_repo


@pytest.mark.slow
def test_dvc_repro_end_to_end(engine_runs):
    repo, _ = engine_runs
    assert (repo / "results/figures/gaussian_tradeoff.png").exists()
    shown = _run([f"{BIN}/dvc", "metrics", "show"], repo)
    # the seed-averaged summary is the only DVC metric (per-seed files are plain outputs)
    assert "results/summary/gaussian.json" in shown and "gaussian.k2.b10.reward.mean" in shown, shown
    assert "evaluate.json" not in shown
    again = _run([f"{BIN}/dvc", "repro"], repo)
    assert "up to date" in again and "Running stage" not in again
    html = _run([f"{BIN}/dvc", "plots", "show", "--html-template",
                 str(ROOT / "workflow/plots/offline_template.html"), "-o", "plots_out"], repo)
    page = (repo / "plots_out/index.html").read_text()
    assert "cdn.jsdelivr" not in page and "<script src=" not in page and "vega" in page, html


@pytest.mark.slow
def test_snakemake_run_matches_dvc_run(engine_runs):
    dvc_repo, smk_repo = engine_runs
    assert (smk_repo / "results/figures/gaussian_reward_vs_k.png").exists()
    assert (smk_repo / "logs/finetune/gaussian-0-2.log").exists()
    # both engines ran the same deterministic commands: identical tidy tables
    assert (dvc_repo / "results/summary.csv").read_bytes() == (smk_repo / "results/summary.csv").read_bytes()


@pytest.mark.slow
def test_make_repro_leaves_both_engines_with_nothing_to_do(engine_runs):
    """`make repro` after its Snakemake run: `dvc commit` (which rewrites cached outputs in its own order) and
    `snakemake --touch`; then neither engine plans any work."""
    _, repo = engine_runs
    make = (ROOT / "Makefile").read_text()
    assert "dvc commit --force --quiet\n" in make and "snakemake --profile workflow/profiles/local --touch" in make
    _run([f"{BIN}/dvc", "commit", "--force", "--quiet"], repo)
    _run([f"{BIN}/snakemake", "--profile", "workflow/profiles/local", "--touch", "--quiet", "all"], repo)
    planned = _run([f"{BIN}/snakemake", "-n", "--profile", "workflow/profiles/local"], repo)
    assert "Nothing to be done" in planned, planned[-2000:]
    assert "up to date" in _run([f"{BIN}/dvc", "status"], repo)


@pytest.mark.slow
def test_dvc_exp_run_with_set_param(engine_runs):
    repo, _ = engine_runs
    _run(["git", "add", "-A"], repo)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"], repo)
    out = _run([f"{BIN}/dvc", "exp", "run", "-S", "finetune.learning_rate=0.002"], repo)
    assert "Running stage 'finetune-gaussian@0-2'" in out and "Running stage 'pretrain-gaussian'" not in out


# ---- rerun equivalence: an edit reruns the same jobs under both engines, and the ones the table predicts ----

def _dvc_status(repo: Path) -> set[str]:
    import json

    out = _run([f"{BIN}/dvc", "status", "--json"], repo)
    return set(json.loads(out[out.index("{"):out.rindex("}") + 1]) if "{" in out else {})


def _dvc_changed(repo: Path) -> set[str]:
    """The stages DVC reruns: after a code edit `pgraft pipeline dvc` refreshes the stamps; validate (when an edit
    touches it) rewrites them after a params edit, then every stage whose stamp or input changed reruns."""
    _run([f"{BIN}/pgraft", "pipeline", "dvc"], repo)
    first = _dvc_status(repo)
    if "validate" not in first:
        return first
    _run([f"{BIN}/dvc", "repro", "--single-item", "validate"], repo)
    return {"validate"} | _dvc_status(repo)


def _stale(repo: Path) -> set[str]:
    """rerun.stale_instances run on the copy's own code (its src/ is first on the path there)."""
    import json

    code = ("import json, yaml; from pathlib import Path; from pgraft.pipeline import rerun\n"
            "raw = yaml.safe_load(Path('params.yaml').read_text())\n"
            "print(json.dumps(sorted(rerun.stale_instances(raw, Path('.'), Path('results/stamps')))))")
    return set(json.loads(_run([sys.executable, "-c", code], repo).strip().splitlines()[-1]))


def _smk_planned(repo: Path) -> set[str]:
    from pgraft.pipeline.table import BY_NAME, instance_name

    out = _run([f"{BIN}/snakemake", "-n", "--profile", "workflow/profiles/local"], repo)
    names, rule = set(), None
    for line in out.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line.strip())
        if m:
            rule = m.group(1)
            if rule in BY_NAME and not BY_NAME[rule].axes:
                names.add(rule)
            continue
        w = re.match(r"^wildcards: (.*)$", line.strip())
        if w and rule in BY_NAME:
            point = dict(kv.split("=", 1) for kv in w.group(1).split(", "))
            names.add(instance_name(BY_NAME[rule], point))
    return names


def _edit_params(repo: Path, key: str, value) -> None:
    p = yaml.safe_load((repo / "params.yaml").read_text())
    node = p
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))


SOURCE_EDITS = {  # how a source file is edited: a comment or a docstring changes no syntax tree, a statement does
    "comment": lambda text: text + "\n# an edit\n",
    "docstring": lambda text: text.replace('"""', '"""An edited docstring, rewrapped\n', 1),
    "code": lambda text: text + "\n_EDIT = 1\n",
}
EDITS = [  # (params key and new value) or (source file and the kind of edit)
    ("finetune.learning_rate", 0.0037), ("sampler.eta", 0.5), ("gaussian.reward.temperature", 2.0),
    ("evaluate.num_samples", 120), ("src/pgraft/domains/gaussian.py", "comment"),
    ("src/pgraft/domains/gaussian.py", "code"), ("src/pgraft/samplers/rollout.py", "code"),
    ("src/pgraft/runtime/runner.py", "docstring"), ("src/pgraft/tracking/spool.py", "code"),
    ("src/pgraft/config.py", "code"),
]


@pytest.mark.slow
@pytest.mark.parametrize("what,value", EDITS, ids=[f"{e[0]}-{e[1]}" for e in EDITS])
def test_an_edit_reruns_the_same_jobs_under_both_engines(engine_runs, what, value):
    import os

    from pgraft.pipeline import rerun

    saved = {}
    for repo in engine_runs:
        source = value in SOURCE_EDITS
        target = repo / (what if source else "params.yaml")
        saved[repo] = (target, target.read_bytes(), target.stat())
        if source:
            target.write_text(SOURCE_EDITS[value](target.read_text()))
        else:
            _edit_params(repo, what, value)
    try:
        dvc_repo, smk_repo = engine_runs
        raw = yaml.safe_load((dvc_repo / "params.yaml").read_text())
        keys, files = ([], [what]) if value in SOURCE_EDITS else ([what], [])
        predicted = rerun.affected(raw, keys=keys, files=files, root=dvc_repo)
        if files:  # what the stamps say before any engine rewrites them: none for an edit that cannot change a number
            stale = _stale(dvc_repo)
            stale |= {"validate"} if stale else set()
            no_behaviour = value != "code" or what.startswith(("src/pgraft/tracking/", "src/pgraft/config.py"))
            assert stale == (set() if no_behaviour else predicted), sorted(stale ^ predicted)[:5]
            predicted = stale
        by_dvc = rerun.downstream(raw, _dvc_changed(dvc_repo))
        by_smk = _smk_planned(smk_repo)
        assert by_dvc == predicted, f"DVC only: {sorted(by_dvc - predicted)[:5]}; table only: {sorted(predicted - by_dvc)[:5]}"
        assert by_smk == predicted, f"Snakemake only: {sorted(by_smk - predicted)[:5]}; table only: {sorted(predicted - by_smk)[:5]}"
        if (what, value) == ("src/pgraft/domains/gaussian.py", "code"):
            assert predicted and not any("digits_t2i" in n or "digits_flow" in n for n in predicted)
    finally:
        for target, data, st in saved.values():
            target.write_bytes(data)
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        _run([f"{BIN}/pgraft", "pipeline", "dvc"], engine_runs[0])  # the stamps as they were
        _run([f"{BIN}/dvc", "repro", "--single-item", "validate"], engine_runs[0])


# ---- a bad edit loses nothing ----

BAD_EDITS = [("finetune.learning_rate", -0.002), ("truncation_grid", [0, 2, 9]), ("filter.params.k", 99),
             ("seeds", [0, 0]), ("ddpo.domains", ["qm9"]), ("sampler.colour", "blue")]


def _tree(repo: Path) -> dict[str, bytes]:
    return {p.relative_to(repo).as_posix(): p.read_bytes() for p in sorted((repo / "results").rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_bad_params_edits_leave_results_untouched(engine_runs):
    import subprocess

    from pipeline_helpers import engine_env

    for repo, cmd in zip(engine_runs, ([f"{BIN}/dvc", "repro"],
                                       [f"{BIN}/snakemake", "--profile", "workflow/profiles/local"])):
        before = _tree(repo)
        original = (repo / "params.yaml").read_bytes()
        try:
            for key, value in BAD_EDITS:
                _edit_params(repo, key, value)
                res = subprocess.run(cmd, cwd=repo, env=engine_env(repo), capture_output=True, text=True, timeout=300)
                msg = res.stdout + res.stderr
                assert res.returncode != 0, f"{cmd[0]} accepted {key}={value!r}"
                assert key.split(".")[-1] in msg and len(msg) < 6000, msg[-2000:]
                (repo / "params.yaml").write_bytes(original)
                assert _tree(repo) == before, f"{key}={value!r} changed results/ under {cmd[0]}"
        finally:
            (repo / "params.yaml").write_bytes(original)
