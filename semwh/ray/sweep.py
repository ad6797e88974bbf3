"""``semwh analyze sweep|grid|peak --backend ray``: comparisons and permutation blocks fan out
as Ray tasks.

The driver loads the spaces and plans every comparison of a family (a sweep, a grid, a
peak-layer test) and hands the ones to compute to the runner every family shares
(:func:`semwh.runs.runner.run_family`), which maps them with this mapper. It puts each
distinct concept matrix in the object store once (a word space shared by every layer travels
once, not once per comparison), runs the pure per-comparison function in Ray tasks and hands
the records back in the order of the specs, so the driver stores them exactly as the local
backend does. Each spec carries its own seed (derived per comparison in a sweep, the grid's
in a grid), so the numbers are the local backend's, bit for bit.

A comparison with more permutations than ``perm_block`` is split: one task computes its
statistic (and bootstrap interval) without the null, and each block of ``perm_block``
permutations of its stream is a task of its own (:func:`semwh.runs.comparison.comparison_null`).
The driver concatenates the blocks in order and completes the record
(:func:`semwh.runs.comparison.with_null`): the null, p-value and FDR are again the local
backend's, bit for bit, because a block draws the same permutations of the same seed's stream
and runs them through the same code as the local null.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from semwh.analyze.permutation import permutation_blocks
from semwh.errors import ConfigError, DegenerateInputError
from semwh.ray.session import import_ray, ray_session, semwh_cause
from semwh.runs.comparison import comparison_null, with_null, without_null
from semwh.runs.records import ComparisonSpec, ResultRecord

#: Permutations per Ray task when a comparison's null is split. A block repeats the
#: comparison's set-up (similarity matrices, the 2 vs 2 null's per-pair terms), which costs
#: about as much as a few permutations, so blocks of a few hundred keep that below a few
#: percent while a default sweep (1000 permutations) spreads each null over four tasks.
PERM_BLOCK = 250


def run_remote(
    step: Callable[[ComparisonSpec], Any], spec: ComparisonSpec, a: np.ndarray, b: np.ndarray
) -> Any:
    """Rebuild a spec around its matrices (fetched from the object store) and run ``step``.

    A record comes back with the bare spec (no matrices): the driver still holds them.
    """
    out = step(replace(spec, a=a, b=b))
    return replace(out, spec=spec) if isinstance(out, ResultRecord) else out


def null_remote(
    spec: ComparisonSpec, a: np.ndarray, b: np.ndarray, start: int, stop: int
) -> tuple[np.ndarray, float] | None:
    """Permutations ``start..stop-1`` of a spec's null, rebuilt around its matrices; seconds.

    None for a degenerate input: the comparison's own task reports it (an error, or skipped),
    and a failed block that is never read would only be logged by Ray.
    """
    began = time.perf_counter()
    try:
        null = comparison_null(replace(spec, a=a, b=b), start, stop)
    except DegenerateInputError:
        return None
    return null, time.perf_counter() - began


class RaySweepMapper:
    """Maps the per-comparison function over specs with Ray tasks (the ``mapper`` of a
    sweep, a grid or a peak-layer test).

    Args:
        address: Ray cluster to join; None starts a small local Ray (or joins ``RAY_ADDRESS``).
        cpus_per_task: CPUs each comparison (and each permutation block) reserves.
        gpus_per_task: GPUs each comparison reserves (for ``--device cuda``; fractions allowed).
        perm_block: Permutations per task for comparisons with more than that many; 0 runs
            every comparison, null included, in one task.

    Attributes:
        submitted: Tasks submitted by the last call: ``comparisons`` and ``null_blocks``.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        cpus_per_task: float = 1.0,
        gpus_per_task: float = 0.0,
        perm_block: int = PERM_BLOCK,
    ) -> None:
        import_ray()
        if cpus_per_task <= 0 and gpus_per_task <= 0:
            raise ConfigError("a comparison task needs some CPUs or GPUs")
        if isinstance(perm_block, bool) or int(perm_block) != perm_block or perm_block < 0:
            raise ConfigError(
                f"--perm-block must be a number of permutations (0: whole comparisons), "
                f"got {perm_block!r}"
            )
        self.address = address
        self.cpus_per_task = cpus_per_task
        self.gpus_per_task = gpus_per_task
        self.perm_block = int(perm_block)
        self.submitted = {"comparisons": 0, "null_blocks": 0}

    def blocks(self, spec: ComparisonSpec) -> list[tuple[int, int]]:
        """The ``(start, stop)`` permutation blocks of a spec that run as their own tasks
        (none when the comparison runs whole)."""
        n_permutations = spec.options.permutations
        if not self.perm_block or n_permutations <= self.perm_block:
            return []
        return permutation_blocks(n_permutations, self.perm_block)

    def __call__(
        self, step: Callable[[ComparisonSpec], Any], specs: Iterable[ComparisonSpec]
    ) -> Iterator[ResultRecord | Any]:
        specs = list(specs)
        self.submitted = {"comparisons": 0, "null_blocks": 0}
        if not specs:
            return
        with ray_session(self.address) as ray:
            if any(s.options.device.startswith("cuda") for s in specs) and not self.gpus_per_task:
                raise ConfigError(
                    "--device cuda with the ray backend needs GPUs for the tasks: pass "
                    "--gpus-per-actor (e.g. 0.25)"
                )
            resources = {"num_cpus": self.cpus_per_task, "num_gpus": self.gpus_per_task}
            task = ray.remote(**resources)(run_remote)
            null_task = ray.remote(**resources)(null_remote)
            matrices: dict[tuple[str, str], Any] = {}

            def put(name: str, concepts: str, matrix: np.ndarray) -> Any:
                key = (name, concepts)
                if key not in matrices:
                    matrices[key] = ray.put(matrix)
                return matrices[key]

            jobs: list[tuple[Any, list[Any]]] = []
            for spec in specs:
                a = put(spec.space_a, spec.concepts_sha256, spec.a)
                # B's matrices depend on how it was turned into a target (an RDM's
                # normalisation), not only on its concepts.
                b = put(spec.space_b, f"{spec.concepts_sha256}:{spec.target}", spec.b)
                bare = replace(spec, a=np.empty((0, 0)), b=np.empty((0, 0)))
                blocks = self.blocks(spec)
                if not blocks:
                    jobs.append((task.remote(step, bare, a, b), []))
                    continue
                observed = task.remote(step, without_null(bare), a, b)
                nulls = [null_task.remote(bare, a, b, start, stop) for start, stop in blocks]
                jobs.append((observed, nulls))
                self.submitted["null_blocks"] += len(nulls)
            self.submitted["comparisons"] = len(jobs)
            done = 0
            try:
                for spec, (ref, null_refs) in zip(specs, jobs, strict=True):
                    out = ray.get(ref)
                    if null_refs and isinstance(out, ResultRecord):
                        out = _complete(out, spec, ray.get(null_refs))
                    else:
                        # Skipped as degenerate: its blocks have nothing to add; free their CPUs.
                        for pending in null_refs:
                            ray.cancel(pending)
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
                for ref, null_refs in jobs[done:]:
                    for pending in (ref, *null_refs):
                        ray.cancel(pending)


def _complete(
    record: ResultRecord, spec: ComparisonSpec, parts: list[tuple[np.ndarray, float] | None]
) -> ResultRecord:
    """The statistic's record completed with the null blocks, concatenated in order."""
    if any(part is None for part in parts):
        # The statistic was computed, so the same inputs cannot be degenerate for a block.
        raise DegenerateInputError(
            f"{spec.options.test} of space {spec.space_a!r} vs space {spec.space_b!r}: a "
            "permutation block found the input degenerate although the statistic did not"
        )
    nulls = [part[0] for part in parts if part is not None]
    seconds = sum(part[1] for part in parts if part is not None)
    return with_null(record, spec, np.concatenate(nulls), seconds)
