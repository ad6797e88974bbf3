"""Backends: where extraction batches and sweep comparisons run.

``local`` runs them in this process (the default). ``ray`` runs the same per-batch and
per-comparison functions on a Ray cluster (``pip install 'semwh[ray]'``): Ray is imported only
inside :mod:`semwh.ray.session`, and only when the ray backend is chosen. Whatever the
backend, the driver alone writes to the registry, so results, resume and provenance are the
same.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from semwh.errors import ConfigError

if TYPE_CHECKING:  # both load torch or numpy-heavy modules: keep `semwh --help` fast
    from semwh.extract import ExtractionSummary
    from semwh.runs.sweep import Mapper

BACKENDS = ("local", "ray")


def _is_local(backend: str, ray_options: str, given: bool) -> bool:
    """Whether ``backend`` is local; refuses an unknown one and Ray options given to local."""
    if backend not in BACKENDS:
        # "engine" is the other spelling of the CLI's --backend option.
        raise ConfigError(f"unknown engine {backend!r} (choose {', '.join(BACKENDS)})")
    if backend == "local" and given:
        raise ConfigError(f"{ray_options} apply to --backend/--engine ray only")
    return backend == "local"


def extraction_backend(
    backend: str = "local",
    *,
    ray_address: str | None = None,
    gpus_per_actor: float = 0.0,
    actors: int | None = None,
) -> Callable[..., ExtractionSummary]:
    """The extraction entry point of a backend, called like :func:`semwh.extract.run_extraction`
    (the warehouse, an :class:`semwh.extract.ExtractionOptions`, then per-call keywords).

    Raises:
        ConfigError: An unknown backend, or Ray options given to the local backend.
        MissingDependencyError: ``ray`` without Ray installed.
    """
    given = ray_address is not None or bool(gpus_per_actor) or actors is not None
    if _is_local(backend, "--ray-address, --gpus-per-actor and --actors", given):
        from semwh.extract import run_extraction

        return run_extraction
    from semwh.ray.extract import run_extraction_ray
    from semwh.ray.session import import_ray

    import_ray()
    return partial(
        run_extraction_ray,
        ray_address=ray_address,
        gpus_per_actor=gpus_per_actor,
        actors=actors,
    )


def sweep_mapper(
    backend: str = "local",
    *,
    ray_address: str | None = None,
    gpus_per_task: float = 0.0,
    perm_block: int | None = None,
) -> Mapper:
    """The ``mapper`` argument of :func:`semwh.runs.sweep.sweep` for a backend name.

    ``perm_block``: permutations per Ray task (None: the ray backend's default, 0: whole
    comparisons); see :class:`semwh.ray.sweep.RaySweepMapper`.

    Raises:
        ConfigError: An unknown backend, or Ray options given to the local backend.
        MissingDependencyError: ``ray`` without Ray installed.
    """
    given = ray_address is not None or bool(gpus_per_task) or perm_block is not None
    if _is_local(backend, "--ray-address, --gpus-per-actor and --perm-block", given):
        return map
    from semwh.ray.sweep import PERM_BLOCK, RaySweepMapper

    return RaySweepMapper(
        ray_address,
        gpus_per_task=gpus_per_task,
        perm_block=PERM_BLOCK if perm_block is None else perm_block,
    )


__all__ = ["BACKENDS", "extraction_backend", "sweep_mapper"]
