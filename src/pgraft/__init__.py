"""pgraft: reward fine-tuning of diffusion models by rejection sampling (GRAFT, P-GRAFT, INC)."""

__version__ = "0.1.0"  # the package version: pyproject.toml reads it (`pgraft --version` prints it)
