"""Domains: what is generated, its data, its base model's architecture and its rewards."""

from pgraft.domains.base import DiffusionDomain, Domain, FlowDomain
from pgraft.domains.digits_flow import DigitsFlowDomain
from pgraft.domains.digits_t2i import DigitsT2IDomain
from pgraft.domains.gaussian import GaussianDomain
from pgraft.domains.layouts import LayoutsDomain
from pgraft.domains.qm9 import Qm9DedupDomain, Qm9Domain
from pgraft.domains.sd2 import Sd2Domain
from pgraft.registry import Registry

REGISTRY: Registry[type[Domain]] = Registry("domain")


def register(name: str, cls: type[Domain]) -> type[Domain]:
    """Make domain `cls` available as `name` (its params.yaml section); a plugin module calls this on import."""
    if not (isinstance(cls, type) and issubclass(cls, (DiffusionDomain, FlowDomain))):
        raise ValueError(f"domain {name!r}: {cls!r} is not a DiffusionDomain or FlowDomain subclass")
    if getattr(cls, "name", None) != name or not hasattr(cls, "Params"):
        raise ValueError(f"domain {name!r}: the class needs name = {name!r} and a Params model (its section)")
    return REGISTRY.register(name, cls)


register("gaussian", GaussianDomain)
register("layouts", LayoutsDomain)
register("qm9", Qm9Domain)
register("qm9_dedup", Qm9DedupDomain)
register("digits_flow", DigitsFlowDomain)
register("digits_t2i", DigitsT2IDomain)
register("sd2", Sd2Domain)


def build(name: str, params) -> Domain:
    """The domain `name` configured from the validated Params (its section; the top-level device and precision)."""
    domain = REGISTRY.get(name)(params.domain_params(name))
    domain.device_setting, domain.precision = params.device, params.precision
    return domain


__all__ = ["DiffusionDomain", "Domain", "FlowDomain", "REGISTRY", "build", "register"]
