"""Analysis plans: the memory a comparison needs before it runs, and whether it fits.

The two n x n similarity matrices are the inputs of every test. They stay in memory when
they fit next to the test's working memory; otherwise they are written to files in the
warehouse's tmp/ and read back a block of rows at a time (numpy memmaps), so that only the
working memory has to fit. A plan that does not fit even then is refused with its numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from semwh.errors import ResourceError
from semwh.resources import human_bytes

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

    def lines(self) -> list[str]:
        """The plan for people: sizes, where the inputs live, memory needed and free."""
        n = self.n_concepts
        where = "streamed from files in tmp/" if self.stream_inputs else "in memory"
        free = "unknown" if self.ram_free is None else human_bytes(self.ram_free)
        return [
            f"{self.what}: {n} concepts ({n * (n - 1) // 2} pairs), {self.metric}, "
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
) -> AnalysisPlan:
    """The plan of one comparison (pure: the caller measures free memory and disk)."""
    n = n_concepts
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
        work_bytes=work_bytes(test, metric, n, dims, permutations, bootstrap, n_jobs),
        ram_free=ram_free,
        disk_free=disk_free,
    )


def check_analysis_plan(plan: AnalysisPlan) -> None:
    """Refuse a comparison that cannot fit, with the numbers and what to change.

    Raises:
        ResourceError: The working memory exceeds the memory available even with the inputs
            streamed from tmp/, or tmp/ lacks the space for them.
    """
    if plan.fits:
        return
    assert plan.ram_free is not None
    if plan.work_bytes > plan.ram_free:
        hints = []
        if plan.permutations:
            hints.append("fewer concepts for the permutation test (or run it without -n)")
        if plan.bootstrap:
            hints.append("drop --bootstrap")
        if plan.test == "rsa" and plan.metric != "pearson":
            hints.append("--method pearson (row-blocked, O(n) memory)")
        hints.append("a machine with more memory (or raise --memory)")
        raise ResourceError(
            f"{plan.what} over {plan.n_concepts} concepts needs about "
            f"{human_bytes(plan.work_bytes)} of working memory besides its two similarity "
            f"matrices ({human_bytes(plan.inputs_bytes)}, which can be streamed from tmp/) but "
            f"{human_bytes(plan.ram_free)} is available: use {'; or '.join(hints)}"
        )
    raise ResourceError(
        f"{plan.what} over {plan.n_concepts} concepts streams its two similarity matrices "
        f"({human_bytes(plan.inputs_bytes)}) from the warehouse's tmp/, which has "
        f"{human_bytes(plan.disk_free or 0)} free: free disk space there, or run it on a "
        f"machine with {human_bytes(plan.inputs_bytes + plan.work_bytes)} of memory"
    )
