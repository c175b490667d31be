"""Domains: what is generated, its data, its base model's architecture and its rewards."""

from pgraft.domains.base import Domain
from pgraft.domains.digits_flow import DigitsFlowDomain
from pgraft.domains.digits_t2i import DigitsT2IDomain
from pgraft.domains.gaussian import GaussianDomain
from pgraft.domains.layouts import LayoutsDomain
from pgraft.domains.qm9 import Qm9DedupDomain, Qm9Domain
from pgraft.domains.sd2 import Sd2Domain
from pgraft.registry import Registry

REGISTRY: Registry[type[Domain]] = Registry("domain")
REGISTRY.register("gaussian", GaussianDomain)
REGISTRY.register("layouts", LayoutsDomain)
REGISTRY.register("qm9", Qm9Domain)
REGISTRY.register("qm9_dedup", Qm9DedupDomain)
REGISTRY.register("digits_flow", DigitsFlowDomain)
REGISTRY.register("digits_t2i", DigitsT2IDomain)
REGISTRY.register("sd2", Sd2Domain)


def build(name: str, params) -> Domain:
    """The domain `name` configured from the validated Params."""
    return REGISTRY.get(name)(params.domain_params(name))


__all__ = ["Domain", "REGISTRY", "build"]
