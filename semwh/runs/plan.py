"""Analysis plans: the memory a comparison needs before it runs, and whether it fits.

The two n x n similarity matrices are the inputs of every test. They stay in memory when
they fit next to the test's working memory; otherwise they are written to files in the
warehouse's tmp/ and read back a block of rows at a time (numpy memmaps), so that only the
working memory has to fit. A plan that does not fit even then is refused with its numbers.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from semwh.errors import ResourceError
from semwh.resources import available_ram, free_disk, human_bytes

if TYPE_CHECKING:
    from semwh.runs.records import ComparisonSpec

#: Bytes of one float64 entry.
_F64 = 8

#: Entries of one block of the row-blocked input checks (semwh.analyze._checks).
_CHECK_BLOCK_ENTRIES = 1 << 22
#: The 2 vs 2 kernel's block arrays: about 30 float64 arrays of rows x n, rows at least 64 (or
#: n) and about 2**18 / n, and at most 512 MiB in all
#: (semwh.analyze.two_vs_two_margins.BlockMargins.block_rows).
_KERNEL_ARRAYS = 30
_KERNEL_BLOCK_ENTRIES = 1 << 18
_KERNEL_MAX_BYTES = 512 * 2**20


#: Bytes of one null value while it is stored: the float64 null, its Python float and list
#: slot, and its JSON text and the driver's copy of it (measured: about 73 bytes).
_STORED_VALUE_BYTES = 96
#: Bytes per permutation drawn before its statistic: the RSA and 2 vs 2 nulls draw a block's
#: permutations first (n int64 each, plus array headers); the measures recompute each
#: relabelling and hold one Python float per value until the null is complete.
_DRAWN_EXTRA = {"rsa": 64, "2v2": 256}
_MEASURE_VALUE_BYTES = 48
#: A null held in a family (a grid's max-statistic reads every cell's null back: JSON text,
#: Python floats and the stacked float64 matrix).
FAMILY_VALUE_BYTES = 96


def permutation_bytes(test: str, n: int, permutations: int) -> int:
    """Memory that grows with the permutations of one comparison: the null and its stored
    copy, and the relabellings drawn for it (see the constants above)."""
    if permutations <= 0:
        return 0
    if test in _DRAWN_EXTRA:
        per = _F64 * n + _DRAWN_EXTRA[test]
    else:
        per = _MEASURE_VALUE_BYTES
    return permutations * (per + _STORED_VALUE_BYTES)


def bootstrap_bytes(test: str, n: int, bootstrap: int) -> int:
    """Memory that grows with the bootstrap resamples: one value each (RSA), or the resample
    counts and their products with the pair table (2 vs 2: about five float64 rows of n)."""
    if bootstrap <= 0:
        return 0
    per = 5 * _F64 * n + 160 if test == "2v2" else 3 * _F64
    return bootstrap * per


def _block_bytes(n: int) -> int:
    """Working memory of the row-blocked checks and kernels at ``n`` concepts: a few check
    blocks (at most 4 Mi entries each) and the 2 vs 2 kernel's block arrays."""
    checks = 5 * min(_CHECK_BLOCK_ENTRIES, n * n) * _F64
    rows = min(n, max(64, _KERNEL_BLOCK_ENTRIES // max(n, 1)))
    kernel = min(_KERNEL_ARRAYS * _F64 * n * rows, _KERNEL_MAX_BYTES)
    return checks + kernel


@dataclass(frozen=True)
class AnalysisPlan:
    """Memory of one comparison and where its inputs live.

    Attributes:
        test: ``rsa`` or ``2v2``.
        what: The comparison, for messages (e.g. ``2v2 of 'a' vs 'b'``).
        n_concepts: n.
        dims: Dimensions of the two spaces' vectors.
        metric: RSA method or 2 vs 2 distance.
        permutations: Size of the null.
        bootstrap: Bootstrap resamples.
        device: Where the kernels run.
        inputs_bytes: The two n x n similarity matrices.
        work_bytes: Working memory besides the inputs (vectors, blocks, ranks, nulls).
        ram_free: Memory the analysis may use (available RAM, or the given limit).
        disk_free: Free bytes in tmp/ for streamed inputs (None: unknown).
    """

    test: str
    what: str
    n_concepts: int
    dims: tuple[int, int]
    metric: str
    permutations: int
    bootstrap: int
    device: str
    inputs_bytes: int
    work_bytes: int
    ram_free: int | None
    disk_free: int | None
    #: What the n items are: ``concepts``, or at the image level ``stimuli of K concepts,
    #: permuting SCHEME``.
    items: str = "concepts"

    @property
    def stream_inputs(self) -> bool:
        """Whether the inputs go to files in tmp/ (they do not fit next to the work)."""
        if self.ram_free is None:
            return False
        return self.inputs_bytes + self.work_bytes > self.ram_free

    @property
    def ram_needed(self) -> int:
        return self.work_bytes + (0 if self.stream_inputs else self.inputs_bytes)

    @property
    def fits(self) -> bool:
        if self.ram_free is None:
            return True
        disk_ok = not self.stream_inputs or self.disk_free is None
        disk_ok = disk_ok or self.inputs_bytes <= self.disk_free  # type: ignore[operator]
        return self.work_bytes <= self.ram_free and disk_ok

    @property
    def unit(self) -> str:
        """What the n items are called: ``concepts`` or ``stimuli``."""
        return "stimuli" if self.items.startswith("stimuli") else "concepts"

    def lines(self) -> list[str]:
        """The plan for people: sizes, where the inputs live, memory needed and free."""
        n = self.n_concepts
        where = "streamed from files in tmp/" if self.stream_inputs else "in memory"
        free = "unknown" if self.ram_free is None else human_bytes(self.ram_free)
        return [
            f"{self.what}: {n} {self.items} ({n * (n - 1) // 2} pairs), {self.metric}, "
            f"{self.permutations} permutations, {self.bootstrap} bootstrap resamples "
            f"on {self.device}",
            f"  inputs: 2 similarity matrices of {n} x {n} = {human_bytes(self.inputs_bytes)}, "
            f"{where}; working memory {human_bytes(self.work_bytes)}",
            f"  RAM: {human_bytes(self.ram_needed)} needed, {free} available",
        ]


def work_bytes(
    test: str,
    metric: str,
    n: int,
    dims: tuple[int, int],
    permutations: int,
    bootstrap: int,
    n_jobs: int,
) -> int:
    """Estimated peak memory of a comparison besides its two n x n inputs."""
    m = n * (n - 1) // 2
    square = n * n * _F64
    # The vectors (float64, and their normalised copies) and one tile of products.
    total = 2 * n * sum(dims) * _F64 + 256 * n * _F64 + _block_bytes(n)
    if test == "2v2":
        # Low-rank search of the single test: a few n x 512 arrays.
        total += 4 * n * 512 * _F64
        if permutations:
            # Centred copies of both matrices, the fused per-pair terms when they are cached
            # (7 half matrices) and one relabelled matrix per thread.
            total += 2 * square + 7 * square // 2 + n_jobs * 2 * square
    else:
        if metric == "spearman":
            # One triangle and its sort order while ranking, then two rank vectors.
            total += 16 * m + 8 * m
        elif metric == "kendall":
            # Both triangles and the sort's work arrays.
            total += 7 * 8 * m
        if permutations:
            # Triangle indices, values, ranks and centred copies; full tables and per-thread
            # gathers (float32 when exact, counted as float64).
            total += 8 * 8 * m + 3 * square + n_jobs * 2 * square
    if bootstrap:
        # Triangle indices and one resample's index and value arrays.
        total += 16 * m + 5 * 8 * m
    # What grows with the counts: the null (and its stored copy) and the resamples.
    total += permutation_bytes(test, n, permutations) + bootstrap_bytes(test, n, bootstrap)
    return int(total)


def plan_analysis(
    test: str,
    what: str,
    *,
    n_concepts: int,
    dims: tuple[int, int],
    metric: str,
    permutations: int,
    bootstrap: int,
    device: str,
    ram_free: int | None,
    disk_free: int | None,
    n_jobs: int = 1,
    n_subjects: int = 0,
) -> AnalysisPlan:
    """The plan of one comparison (pure: the caller measures free memory and disk).

    ``n_subjects``: against a target with subjects, its (subjects, n, n) stack of similarity
    matrices stays in memory (not streamed), and a 2 vs 2 bootstrap holds one pair-decision
    matrix per subject besides.
    """
    n = n_concepts
    subject_bytes = 0
    if n_subjects:
        held = 2 if (test == "2v2" and bootstrap) else 1
        subject_bytes = held * n_subjects * n * n * _F64
    return AnalysisPlan(
        test=test,
        what=what,
        n_concepts=n,
        dims=dims,
        metric=metric,
        permutations=permutations,
        bootstrap=bootstrap,
        device=device,
        inputs_bytes=2 * n * n * _F64,
        work_bytes=work_bytes(test, metric, n, dims, permutations, bootstrap, n_jobs)
        + subject_bytes,
        ram_free=ram_free,
        disk_free=disk_free,
    )


def _hints(plan: AnalysisPlan, family: str = "") -> list[str]:
    """What to change, each naming its option: fewer permutations or resamples where their
    count makes the size, fewer concepts where the n x n work does."""
    n = plan.n_concepts
    hints = []
    if plan.permutations:
        grown = permutation_bytes(plan.test, n, plan.permutations)
        hints.append(
            "fewer -n/--permutations"
            if 4 * grown >= plan.work_bytes
            else f"fewer {plan.unit} for the permutation test (or run it without -n)"
        )
    if plan.bootstrap:
        grown = bootstrap_bytes(plan.test, n, plan.bootstrap)
        hints.append(
            "fewer --bootstrap resamples" if 4 * grown >= plan.work_bytes else "drop --bootstrap"
        )
    if plan.test == "rsa" and plan.metric != "pearson":
        hints.append("--method pearson (row-blocked, O(n) memory)")
    hints.append("a machine with more memory" + ("" if family else " (or raise --memory)"))
    return hints


def check_analysis_plan(
    plan: AnalysisPlan, held: int = 0, family: str = "", held_hints: Sequence[str] = ()
) -> None:
    """Refuse a comparison that cannot fit, with the numbers and what to change.

    Args:
        plan: The comparison's plan.
        held: Bytes its family holds besides it (the nulls of other members).
        family: The family, for the message (``sweep``, ``grid``); empty for one comparison.
        held_hints: What to change when ``held`` makes the size, biggest part first.

    Raises:
        ResourceError: The working memory (with ``held``) exceeds the memory available even
            with the inputs streamed from tmp/, or tmp/ lacks the space for them.
    """
    if plan.fits and (plan.ram_free is None or plan.work_bytes + held <= plan.ram_free):
        return
    assert plan.ram_free is not None
    if plan.work_bytes + held > plan.ram_free:
        counts = f"{plan.permutations} permutations"
        if plan.bootstrap:
            counts += f", {plan.bootstrap} bootstrap resamples"
        beside = f" and {human_bytes(held)} for the rest of the {family}" if held else ""
        hints = list(held_hints) if held > plan.work_bytes else []
        raise ResourceError(
            f"{plan.what} over {plan.n_concepts} {plan.unit} with {counts} needs about "
            f"{human_bytes(plan.work_bytes)} of working memory{beside} besides its two "
            f"similarity matrices ({human_bytes(plan.inputs_bytes)}, which can be streamed "
            f"from tmp/) but {human_bytes(plan.ram_free)} is available: use "
            f"{'; or '.join(dict.fromkeys([*hints, *_hints(plan, family)]))}"
        )
    raise ResourceError(
        f"{plan.what} over {plan.n_concepts} {plan.unit} streams its two similarity matrices "
        f"({human_bytes(plan.inputs_bytes)}) from the warehouse's tmp/, which has "
        f"{human_bytes(plan.disk_free or 0)} free: free disk space there, or run it on a "
        f"machine with {human_bytes(plan.inputs_bytes + plan.work_bytes)} of memory"
    )


def memory_free(memory: int | None = None) -> int | None:
    """Bytes an analysis may use: the available RAM, or ``memory`` when that is less."""
    free = available_ram()
    if memory is not None:
        free = memory if free is None else min(memory, free)
    return free


def plan_spec(spec: ComparisonSpec, tmp: Path, memory: int | None = None) -> AnalysisPlan:
    """The memory plan of a comparison spec on this machine.

    Args:
        spec: The comparison.
        tmp: Where streamed inputs would go (the warehouse's tmp/).
        memory: Bytes the analysis may use; default (and at most) the available RAM.
    """
    opts = spec.options
    plan = plan_analysis(
        opts.test,
        f"{opts.test} of {spec.space_a!r} vs {spec.space_b!r}",
        n_concepts=spec.n_concepts,
        dims=(int(spec.a.shape[1]), int(spec.b.shape[-1])),
        metric=opts.metric,
        permutations=opts.permutations,
        bootstrap=opts.bootstrap,
        device=opts.device,
        ram_free=memory_free(memory),
        disk_free=free_disk(tmp),
        n_jobs=min(8, os.cpu_count() or 1),
        n_subjects=len(spec.subjects or ()),
    )
    if spec.level == "image":
        items = f"stimuli of {spec.n_distinct_concepts} concepts, permuting {spec.permute}"
        plan = dataclasses.replace(plan, items=items)
    return plan


def check_specs(
    specs: Sequence[ComparisonSpec],
    tmp: Path,
    *,
    family: str,
    held_members: int = 0,
    held_values: Mapping[str, int] | None = None,
    memory: int | None = None,
) -> None:
    """Refuse a family of comparisons (a sweep, a grid) before any of them runs.

    The comparisons run one at a time, so the largest plan counts, plus what the family
    holds besides it: the nulls of ``held_members`` other members (float64 each, as their
    records wait to be stored) and values read back at once (:data:`FAMILY_VALUE_BYTES`
    each), counted by the option that sets them (``{"-n/--permutations": cells * N}``).

    Raises:
        ResourceError: The largest comparison and what the family holds do not fit.
    """
    if not specs:
        return
    plans = [plan_spec(spec, tmp, memory) for spec in specs]
    largest = max(plans, key=lambda plan: plan.ram_needed)
    held = max(0, held_members) * largest.permutations * _F64
    values = {option: count for option, count in (held_values or {}).items() if count > 0}
    held += sum(values.values()) * FAMILY_VALUE_BYTES
    hints = [f"fewer {option}" for option in sorted(values, key=values.__getitem__, reverse=True)]
    check_analysis_plan(largest, held, family, hints)


def check_counts(
    what: str,
    *,
    permutations: int,
    bootstrap: int,
    fixed: int = 0,
    memory: int | None = None,
) -> None:
    """Refuse an analysis whose permutation and bootstrap counts cannot fit, before it runs.

    For analyses without a similarity-matrix plan (paired differences): each permutation
    keeps a float64 null value and its stored copy, each resample a few float64 values.

    Args:
        what: The analysis, for the message.
        permutations: Null values it draws and stores.
        bootstrap: Resamples it draws.
        fixed: Bytes it needs whatever the counts.
        memory: Bytes it may use (default: the available RAM).

    Raises:
        ResourceError: The counts need more memory than is available.
    """
    free = memory_free(memory)
    grown = [
        (max(0, permutations) * (_F64 + _STORED_VALUE_BYTES), "fewer -n/--permutations"),
        (max(0, bootstrap) * 3 * _F64, "fewer --bootstrap resamples"),
    ]
    needed = fixed + sum(size for size, _ in grown)
    if free is None or needed <= free:
        return
    hints = [text for size, text in sorted(grown, reverse=True) if size]
    raise ResourceError(
        f"{what} with {permutations} permutations and {bootstrap} bootstrap resamples needs "
        f"about {human_bytes(needed)} of memory but {human_bytes(free)} is available: use "
        f"{'; or '.join([*hints, 'a machine with more memory'])}"
    )
