"""Pipeline stages, one thin module each, run as `python -m pgraft.stages.<name>` or `pgraft <name>`.

The stage table (pgraft.pipeline.table) defines them; the runtime runs them (pgraft.runtime.runner). The thread
policy is imported first, so its caps are set before numpy or torch is imported.
"""

from pgraft.runtime import threads  # noqa: F401 - sets the BLAS/OpenMP thread caps before any numerical import
