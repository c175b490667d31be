"""Pipeline stages, one module each, run as `python -m pgraft.stages.<name>` or `pgraft <name>`.

Thread policy (README "Threads and reproducibility"): a stage uses PGRAFT_THREADS threads (1 when unset),
capped by the cores it was given (its CPU affinity, SLURM_CPUS_PER_TASK). The cap is set here, before numpy or
torch is imported, for every BLAS/OpenMP pool; `common.set_threads` applies it to torch. One thread per stage
makes results independent of the machine's core count; engines use the cores by running stages in parallel.
"""

import os

STAGES = ("pretrain", "sample", "reward", "filter", "finetune", "variance", "ddpo", "evaluate", "invert", "correct",
          "evaluate_flow", "aggregate", "figures")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def thread_count() -> int:
    """PGRAFT_THREADS (default 1), never more than the cores this process may run on."""
    wanted = int(os.environ.get("PGRAFT_THREADS") or 1)
    granted = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if os.environ.get("SLURM_CPUS_PER_TASK"):
        granted = min(granted, int(os.environ["SLURM_CPUS_PER_TASK"]))
    return max(1, min(wanted, granted))


for _var in THREAD_VARS:
    os.environ[_var] = str(thread_count())
