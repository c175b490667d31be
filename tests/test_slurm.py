"""The Snakemake workflow on a real (single-node) SLURM cluster: same summary as a local run, jobs in SLURM."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest
import yaml

from pipeline_helpers import BIN, ROOT, engine_env, project_copy, shrink

UP, DOWN = ROOT / "scripts/slurm_up.sh", ROOT / "scripts/slurm_down.sh"
# the test cluster runs short jobs (5-15 s each): the first status query 16 s after a submission (later
# ones back off by 10 s each), and one of the node's CPUs per job so that two run at once
FAST = ["--slurm-init-seconds-before-status-checks", "16", "--jobs", "4", "--latency-wait", "10",
        "--default-resources", "slurm_partition=debug", "runtime=10", "mem_mb=1000", "cpus_per_task=1"]
PROFILE = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.yaml").read_text())
GPU_RULES = {rule for rule, res in PROFILE["set-resources"].items() if res.get("gpu")}


@pytest.fixture(scope="session")
def slurm_cluster():
    """Bring up the single-node cluster (scripts/slurm_up.sh); tear it down if this session started it."""
    try:
        up = subprocess.run([str(UP)], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        subprocess.run([str(DOWN)], capture_output=True, text=True, timeout=60)
        pytest.fail("scripts/slurm_up.sh did not finish within 300 s", pytrace=False)
    if up.returncode != 0:
        subprocess.run([str(DOWN)], capture_output=True, text=True, timeout=60)
        pytest.fail(f"the SLURM test cluster could not come up (scripts/slurm_up.sh exited {up.returncode}; "
                    f"it needs root and apt or the Debian packages slurmctld slurmd slurm-client munge):\n"
                    f"{up.stdout[-2000:]}\n{up.stderr[-2000:]}", pytrace=False)
    started_here = "already up" not in up.stdout
    try:
        yield up.stdout
    finally:
        if started_here:
            subprocess.run([str(DOWN)], capture_output=True, text=True, timeout=60)


def tiny(raw: dict) -> dict:
    """The shrunk params cut to the gaussian domain, one seed, two truncation points, one budget and no
    other sweep (inc, ddpo, ...): 9 SLURM jobs (variance included), plus the local rules validate, aggregate and
    figures."""
    p = shrink(raw)
    p["domains"] = ["gaussian"]
    p.pop("regime_map", None)  # a study's grid, not a pipeline sweep: its defaults stand
    for section in p.values():
        if isinstance(section, dict) and isinstance(section.get("domains"), list):
            section["domains"] = []
    p["seeds"] = [0]
    p["truncation_grid"] = [0, p["sampler"]["num_steps"]]
    p["finetune"]["budgets"] = [5]
    return p


def scontrol_job(job_id: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30)
    return out.stdout + out.stderr


@pytest.mark.slow
def test_snakemake_on_slurm_matches_local_run(slurm_cluster, tmp_path, real_params):
    params = tiny(real_params)
    local, repo = tmp_path / "local", tmp_path / "slurm"
    for path in (local, repo):
        path.mkdir()
        project_copy(path, params)
    # the local reference run goes on at low priority while the SLURM run mostly waits on its status checks
    t0 = time.perf_counter()
    local_run = subprocess.Popen(["nice", "-n", "10", f"{BIN}/snakemake", "--profile", "workflow/profiles/local"],
                                 cwd=local, env=engine_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True)
    try:
        # the set-up users run: `make slurm-profile` links the profile where snakemake finds `--profile slurm`
        shutil.copy(ROOT / "Makefile", repo / "Makefile")
        config_home = tmp_path / "config"
        env = {**engine_env(), "XDG_CONFIG_HOME": str(config_home)}
        made = subprocess.run(["make", "-s", "slurm-profile"], cwd=repo, env=env, capture_output=True, text=True)
        assert made.returncode == 0, made.stdout + made.stderr
        assert (config_home / "snakemake/slurm/config.yaml").is_file()
        out = subprocess.run([f"{BIN}/snakemake", "--profile", "slurm", *FAST], cwd=repo, env=env,
                             capture_output=True, text=True, timeout=600)
        t_slurm = time.perf_counter() - t0
        local_log = local_run.communicate(timeout=600)[0]
    finally:
        if local_run.poll() is None:
            local_run.kill()
    log = out.stdout + out.stderr
    assert out.returncode == 0, f"snakemake --profile slurm failed:\n{log[-4000:]}"
    assert local_run.returncode == 0, f"snakemake --profile workflow/profiles/local failed:\n{local_log[-4000:]}"
    print(f"SLURM run {t_slurm:.0f} s (local run alongside, {time.perf_counter() - t0:.0f} s for both)")

    # same deterministic commands, same tidy table
    assert (repo / "results/summary.csv").read_bytes() == (local / "results/summary.csv").read_bytes()
    assert (repo / "results/figures/gaussian_reward_vs_k.png").exists()

    # every job but the local rules (the cheap report stages of the stage table, and `all`) was a SLURM job
    from pgraft.pipeline.table import STAGES

    local_rules = {s.name for s in STAGES if s.local} | {"all"}
    submitted = re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+)/", log)
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", log.split("Job stats:")[1].split("total")[0], re.M))
    planned = sorted(rule for rule, n in stats.items() if rule not in local_rules for _ in range(int(n)))
    assert sorted(rule for _, rule in submitted) == planned, f"{submitted}\n{log[-3000:]}"
    assert len(submitted) == 9 and {"pretrain", "finetune", "evaluate", "variance"} <= set(planned), planned
    assert {"validate", "aggregate", "figures"} <= set(stats), stats  # run on the submitting host
    for job_id, rule in submitted:
        info = scontrol_job(job_id)
        assert "JobState=COMPLETED" in info, f"SLURM job {job_id} ({rule}):\n{info}"
        assert f"WorkDir={repo}" in info, info
        # the profile's set-resources give the network rules one GPU each (fake GPUs from gres.conf)
        wants_gpu = re.search(r"TresPerJob=\S*gpu\S*:1\b", info) is not None
        assert wants_gpu == (rule in GPU_RULES), f"SLURM job {job_id} ({rule}) GPU request:\n{info}"
    assert t_slurm < 400
