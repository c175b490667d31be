"""Thread policy: a stage runs PGRAFT_THREADS threads (1 when unset), capped by the cores it was given.

The cap is set when this module is imported, before numpy or torch, for every BLAS/OpenMP pool
(`pgraft.stages` imports it first); `set_threads` applies it to torch. One thread per stage makes results
independent of the machine's core count; engines use the cores by running stages in parallel
(docs/PIPELINE.md "Threads and reproducibility").
"""

import os

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def thread_count() -> int:
    """PGRAFT_THREADS (default 1), never more than the cores this process may run on."""
    wanted = int(os.environ.get("PGRAFT_THREADS") or 1)
    granted = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if os.environ.get("SLURM_CPUS_PER_TASK"):
        granted = min(granted, int(os.environ["SLURM_CPUS_PER_TASK"]))
    return max(1, min(wanted, granted))


def set_threads() -> None:
    """Give torch the stage's thread count, so results do not depend on the machine's core count."""
    import torch

    torch.set_num_threads(thread_count())


for _var in THREAD_VARS:
    os.environ[_var] = str(thread_count())
