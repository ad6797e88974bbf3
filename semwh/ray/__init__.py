"""Engines: where extraction batches and sweep comparisons run.

``local`` runs them in this process (the default). ``ray`` runs the same per-batch and
per-comparison functions on a Ray cluster (``pip install 'semwh[ray]'``): Ray is imported only
inside :mod:`semwh.ray.session`, and only when the ray engine is chosen. Whatever the
engine, the driver alone writes to the registry, so results, resume and provenance are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from semwh.errors import ConfigError

ENGINES = ("local", "ray")


def _check(engine: str) -> str:
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r} (choose {', '.join(ENGINES)})")
    return engine


def extraction_function(
    engine: str = "local",
    *,
    ray_address: str | None = None,
    gpus_per_actor: float = 0.0,
    actors: int | None = None,
) -> Callable[..., Any]:
    """The extraction entry point of an engine, called like :func:`semwh.extract.run_extraction`.

    Raises:
        ConfigError: An unknown engine, or Ray options given to the local engine.
        MissingDependencyError: ``ray`` without Ray installed.
    """
    if _check(engine) == "local":
        if ray_address is not None or gpus_per_actor or actors is not None:
            raise ConfigError(
                "--ray-address, --gpus-per-actor and --actors apply to --engine ray only"
            )
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


def sweep_engine(
    engine: str = "local",
    *,
    ray_address: str | None = None,
    gpus_per_task: float = 0.0,
    perm_block: int | None = None,
) -> Callable[..., Any]:
    """The ``engine`` argument of :func:`semwh.runs.sweep.sweep` for an engine name.

    ``perm_block``: permutations per Ray task (None: the ray engine's default, 0: whole
    comparisons); see :class:`semwh.ray.sweep.RaySweepEngine`.

    Raises:
        ConfigError: An unknown engine, or Ray options given to the local engine.
        MissingDependencyError: ``ray`` without Ray installed.
    """
    if _check(engine) == "local":
        if ray_address is not None or gpus_per_task or perm_block is not None:
            raise ConfigError(
                "--ray-address, --gpus-per-actor and --perm-block apply to --engine ray only"
            )
        return map
    from semwh.ray.sweep import PERM_BLOCK, RaySweepEngine

    return RaySweepEngine(
        ray_address,
        gpus_per_task=gpus_per_task,
        perm_block=PERM_BLOCK if perm_block is None else perm_block,
    )


__all__ = ["ENGINES", "extraction_function", "sweep_engine"]
