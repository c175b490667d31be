"""What the stage modules share beyond the runner: model files, auxiliary networks, the GRS rule, outputs."""

from __future__ import annotations

from pathlib import Path

from pgraft.checkpoints import base_name, load_base, load_model, save_model  # noqa: F401 (stages import them here)
from pgraft.config import Params
from pgraft.devices import is_main_process
from pgraft.runtime.threads import set_threads  # noqa: F401 (the stages import it from here)


def auxiliary_dir(model_dir) -> Path:
    """Where a domain's auxiliary networks (judges, feature networks) live inside the base model directory."""
    return Path(model_dir) / "auxiliary"


def build_rule(params: Params, domain: str):
    """The GRS rule that filters `domain` (its section's `filter:` or the top-level one)."""
    from pgraft import filters

    f = params.filter_for(domain)
    return filters.build(f.name, **f.params)


def main_output(path):
    """pgraft.io.atomic_dir(path) in the main process; in the other processes of a data-parallel launch a
    context giving None (they write nothing)."""
    import contextlib

    from pgraft.io import atomic_dir

    return atomic_dir(path) if is_main_process() else contextlib.nullcontext(None)
