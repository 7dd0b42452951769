"""Residual network builders: the spec table, the blocks and the one builder."""

from kres.models.builder import build, build_from_spec, get_spec, list_models, preprocessing
from kres.models.registry import REGISTRY, register
from kres.errors import KresError
from kres.models.spec import ResNetSpec

__all__ = ["build", "build_from_spec", "get_spec", "list_models", "preprocessing", "REGISTRY",
           "register", "KresError", "ResNetSpec"]
