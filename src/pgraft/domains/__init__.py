"""Domains: what is generated, its data, its base model's architecture and its rewards."""

from pgraft.domains.base import Domain
from pgraft.domains.digits_flow import DigitsFlowDomain
from pgraft.domains.gaussian import GaussianDomain
from pgraft.registry import Registry

REGISTRY: Registry[type[Domain]] = Registry("domain")
REGISTRY.register("gaussian", GaussianDomain)
REGISTRY.register("digits_flow", DigitsFlowDomain)


def build(name: str, params) -> Domain:
    """The domain `name` configured from the validated Params."""
    return REGISTRY.get(name)(params.domain_params(name))


__all__ = ["Domain", "REGISTRY", "build"]
