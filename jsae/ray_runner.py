"""Moved to ``jsae.corpus.ray``; this name keeps ``from jsae.ray_runner import RayConfig``
working for callers not yet updated (import from ``jsae.corpus`` instead)."""

from jsae.corpus.ray import (
    INSTALL_HINT,
    RayConfig,
    RayEngine,
    RayError,
    check_ray,
    run_units_on_ray,
)

__all__ = ["INSTALL_HINT", "RayConfig", "RayEngine", "RayError", "check_ray", "run_units_on_ray"]
