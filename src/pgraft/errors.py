"""The errors every layer raises (bad params, bad artifacts, a stage that cannot run): the import graph's bottom."""


class ConfigError(ValueError):
    """params.yaml is invalid; the message names every bad key, its value and what is allowed."""


class ArtifactError(ValueError):
    """An input artifact is missing, unreadable or of the wrong kind."""


class StageError(ValueError):
    """A stage cannot run on its inputs; the message says which input and what was expected."""
