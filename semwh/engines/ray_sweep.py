"""``semwh analyze sweep --engine ray``: comparisons fan out as Ray tasks.

The driver loads the spaces and plans every comparison (:func:`semwh.runs.sweep.sweep`); this
engine puts each distinct concept matrix in the object store once (a word space shared by
every layer travels once, not once per comparison), runs the pure per-comparison function in
Ray tasks and hands the records back in the order of the specs, so the driver stores them
exactly as the local engine does. Each spec carries its own derived seed, so the numbers are
the local engine's, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from semwh.engines.ray_session import import_ray, ray_session, semwh_cause
from semwh.errors import ConfigError
from semwh.runs.records import ComparisonSpec, ResultRecord


def run_remote(
    step: Callable[[ComparisonSpec], Any], spec: ComparisonSpec, a: np.ndarray, b: np.ndarray
) -> Any:
    """Rebuild a spec around its matrices (fetched from the object store) and run ``step``.

    A record comes back with the bare spec (no matrices): the driver still holds them.
    """
    out = step(replace(spec, a=a, b=b))
    return replace(out, spec=spec) if isinstance(out, ResultRecord) else out


class RaySweepEngine:
    """Maps the per-comparison function over specs with Ray tasks (a sweep ``engine``).

    Args:
        address: Ray cluster to join; None starts a small local Ray (or joins ``RAY_ADDRESS``).
        cpus_per_task: CPUs each comparison reserves.
        gpus_per_task: GPUs each comparison reserves (for ``--device cuda``; fractions allowed).
    """

    def __init__(
        self, address: str | None = None, *, cpus_per_task: float = 1.0, gpus_per_task: float = 0.0
    ) -> None:
        import_ray()
        if cpus_per_task <= 0 and gpus_per_task <= 0:
            raise ConfigError("a comparison task needs some CPUs or GPUs")
        self.address = address
        self.cpus_per_task = cpus_per_task
        self.gpus_per_task = gpus_per_task

    def __call__(
        self, step: Callable[[ComparisonSpec], Any], specs: Iterable[ComparisonSpec]
    ) -> Iterator[ResultRecord | Any]:
        specs = list(specs)
        if not specs:
            return
        with ray_session(self.address) as ray:
            if any(s.options.device.startswith("cuda") for s in specs) and not self.gpus_per_task:
                raise ConfigError(
                    "--device cuda with the ray engine needs GPUs for the tasks: pass "
                    "--gpus-per-actor (e.g. 0.25)"
                )
            task = ray.remote(num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task)(run_remote)
            matrices: dict[tuple[str, str], Any] = {}

            def put(name: str, concepts: str, matrix: np.ndarray) -> Any:
                key = (name, concepts)
                if key not in matrices:
                    matrices[key] = ray.put(matrix)
                return matrices[key]

            refs = []
            for spec in specs:
                a = put(spec.space_a, spec.concepts_sha256, spec.a)
                b = put(spec.space_b, spec.concepts_sha256, spec.b)
                bare = replace(spec, a=np.empty((0, 0)), b=np.empty((0, 0)))
                refs.append(task.remote(step, bare, a, b))
            done = 0
            try:
                for spec, ref in zip(specs, refs, strict=True):
                    out = ray.get(ref)
                    done += 1
                    yield replace(out, spec=spec) if isinstance(out, ResultRecord) else out
            except Exception as exc:
                # A task's semwh error arrives wrapped by Ray: raise the original.
                cause = semwh_cause(exc)
                if cause is None or cause is exc:
                    raise
                raise cause from exc
            finally:
                # Stopped early (an error, or the caller gave up): drop the tasks not yet read.
                for ref in refs[done:]:
                    ray.cancel(ref)
