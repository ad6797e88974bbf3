"""Paired differences between two stored results over the same concepts (``results_diff``).

Both results are rebuilt from their stored options and inputs as functions of concept counts
(:mod:`semwh.analyze.difference`), so the bootstrap resamples and the per-concept jackknife
differences see the same concepts on both sides. Supported: RSA, 2 vs 2, linear CKA and
regression 2 vs 2. Mutual k-NN alignment is refused: its per-concept scores depend on each
other through shared neighbours, and neither the jackknife nor the sign flips account for
that (its p-values would be too small).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from semwh import measures
from semwh.analyze.difference import (
    WeightedStatistic,
    paired_difference,
)
from semwh.analyze.subjects import SubjectTest, subject_tests
from semwh.errors import ConfigError, NotFoundError
from semwh.measures import analysis_version
from semwh.runs import families, result_rows
from semwh.runs.comparison import plan_comparison
from semwh.runs.options import check_seed
from semwh.runs.plan import check_counts
from semwh.runs.provenance import derive_seed, draw_seed
from semwh.runs.records import ComparisonSpec
from semwh.vectors import load_space
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import PermutationNull, ResultDiff, Space
from semwh.warehouse.writers import results_lock, transaction


def diff_tests() -> tuple[str, ...]:
    """The registered measures whose results a paired difference supports."""
    return tuple(m.name for m in measures.all_measures() if m.difference_refusal() is None)


def parse_ref(text: str) -> tuple[str, int]:
    """``TEST:ID`` (e.g. ``2v2:17``) as (test, result_id)."""
    test, sep, number = text.partition(":")
    if not sep or not number.strip().isdigit() or test not in measures.names():
        raise ConfigError(
            f"result {text!r}: expected TEST:ID with TEST one of {', '.join(diff_tests())} "
            "(e.g. 2v2:17)"
        )
    refusal = measures.get(test).difference_refusal()
    if refusal is not None:
        raise ConfigError(f"{refusal}; compare {', '.join(diff_tests())} results")
    return test, int(number)


@dataclass(frozen=True)
class DiffInputs:
    """Everything one difference needs, loaded: the two results' specs and rows."""

    first: tuple[str, int]
    second: tuple[str, int]
    specs: tuple[ComparisonSpec, ComparisonSpec]
    rows: tuple[Any, Any]


def _spec(wh: Warehouse, session: Session, test: str, row: Any) -> ComparisonSpec:
    for name, recorded in ((row.space_a, row.space_a_sha256), (row.space_b, row.space_b_sha256)):
        now = session.scalar(select(Space.content_sha256).where(Space.name == name))
        if now is None or now != recorded:
            raise ConfigError(
                f"{test} result {row.result_id}: space {name!r} has changed since it was "
                "computed; recompute the result on the current inputs and compare that one"
            )
    hashes = {row.space_a: row.space_a_sha256, row.space_b: row.space_b_sha256}
    spec = plan_comparison(
        load_space(wh, row.space_a),
        load_space(wh, row.space_b),
        result_rows.stored_options(test, row),
        hashes,
    )
    if spec.concepts_sha256 != row.concepts_sha256:
        raise ConfigError(
            f"{test} result {row.result_id}: the spaces no longer share the concepts it was "
            "computed over; recompute it"
        )
    return spec


def diff_inputs(wh: Warehouse, first: str, second: str) -> DiffInputs:
    """Load both results and their inputs; check they are current and share their concepts.

    Raises:
        ConfigError: A bad reference, an unsupported test, changed inputs, or two results
            over different concepts.
        NotFoundError: A result that does not exist.
    """
    refs = (parse_ref(first), parse_ref(second))
    if refs[0] == refs[1]:
        raise ConfigError(f"{first} is compared with itself; name two different results")
    rows = []
    with wh.session() as session:
        for test, result_id in refs:
            row = result_rows.get_comparison(session, test, result_id)
            if row is None:
                raise NotFoundError(f"no {test} result {result_id}")
            rows.append(row)
        image = [f"{t}:{i}" for (t, i), r in zip(refs, rows, strict=True) if r.level == "image"]
        if image:
            raise ConfigError(
                f"{', '.join(image)}: paired differences are computed over concepts; an "
                "image-level result's items are stimuli grouped by concept, whose pseudo-values "
                "and sign flips would treat a concept's images as independent. Compare the "
                "two results' intervals, or difference their concept-level results"
            )
        if rows[0].concepts_sha256 != rows[1].concepts_sha256:
            raise ConfigError(
                f"{first} ({rows[0].n_concepts} concepts) and {second} ({rows[1].n_concepts} "
                "concepts) are over different concept sets; a paired difference needs the same "
                "concepts: recompute one of them over the concepts of the other"
            )
        specs = tuple(_spec(wh, session, t, r) for (t, _), r in zip(refs, rows, strict=True))
    return DiffInputs(refs[0], refs[1], specs, (rows[0], rows[1]))  # type: ignore[arg-type]


def weighted_statistic(spec: ComparisonSpec) -> WeightedStatistic:
    """A stored result's statistic as a function of concept counts (its measure's)."""
    return spec.measure.weighted(spec)


def diff_version(inputs: DiffInputs) -> int:
    """The difference algorithm's version for these results (higher against a target with
    subjects, whose statistic became the mean over subjects)."""
    targets = {spec.target for spec in inputs.specs} - {None}
    return analysis_version("diff", targets.pop() if targets else None)


def paired_over_subjects(
    session: Session, inputs: DiffInputs, seed: int
) -> tuple[int, list[SubjectTest]] | None:
    """Paired tests over subjects of two results against the same subjects' RDMs.

    The per-subject differences of the two results' stored per-subject values are tested
    two-sided with a paired t test, a Wilcoxon signed-rank test and a sign-flip test (these
    generalise over subjects; the concept-level difference stays in ``results_diff``). None
    when the results are not against one target with the same subjects.
    """
    first, second = inputs.specs
    if (
        first.subjects is None
        or first.subjects != second.subjects
        or first.space_b != second.space_b
        or first.target != second.target
        or len(first.subjects) < 2
    ):
        return None
    values = [
        result_rows.subject_values(session, test, result_id)
        for test, result_id in (inputs.first, inputs.second)
    ]
    if any(len(v) != len(first.subjects) for v in values):
        return None
    d = [a - b for (_, a), (_, b) in zip(values[0], values[1], strict=True)]
    tests = subject_tests(
        d, 0.0, seed=derive_seed(seed, "paired-sign-flip"), alternative="two-sided"
    )
    return len(d), tests


def find_diff(
    session: Session,
    inputs: DiffInputs,
    *,
    bootstrap: int,
    permutations: int,
    level: float,
    seed: int | None,
) -> ResultDiff | None:
    """The newest stored difference of the same two results with the same settings."""
    clauses = [
        ResultDiff.first_test == inputs.first[0],
        ResultDiff.first_result_id == inputs.first[1],
        ResultDiff.second_test == inputs.second[0],
        ResultDiff.second_result_id == inputs.second[1],
        ResultDiff.n_bootstrap == bootstrap,
        ResultDiff.n_permutations == permutations,
        ResultDiff.level == level,
        ResultDiff.analysis_version == diff_version(inputs),
    ]
    if seed is not None:
        clauses.append(ResultDiff.seed == seed)
    query = select(ResultDiff).where(*clauses).order_by(ResultDiff.result_id.desc())
    return session.scalars(query).first()


def diff_in(
    wh: Warehouse,
    session: Session,
    inputs: DiffInputs,
    *,
    bootstrap: int = 1000,
    permutations: int = 1000,
    level: float = 0.95,
    seed: int | None = None,
    force: bool = False,
) -> ResultDiff:
    """:func:`diff` inside the caller's transaction, from loaded inputs.

    The results lock is held from the look-up to the end of the transaction, so a second
    writer computing the same difference at once (two sweeps with control differences) finds
    the first one's row instead of storing a twin.
    """
    results_lock(session, "storing a difference")
    found = find_diff(
        session, inputs, bootstrap=bootstrap, permutations=permutations, level=level, seed=seed
    )
    if found is not None and not force:
        return found
    n = inputs.specs[0].n_concepts
    # Refused before any work: the nulls and resamples, and a few n x n pair tables.
    check_counts(
        f"difference of {inputs.first[0]}:{inputs.first[1]} and "
        f"{inputs.second[0]}:{inputs.second[1]}",
        permutations=permutations,
        bootstrap=bootstrap,
        fixed=8 * 8 * n * n,
    )
    seed = draw_seed() if seed is None else seed
    start = time.perf_counter()
    first, second = (weighted_statistic(spec) for spec in inputs.specs)
    result = paired_difference(
        first,
        second,
        inputs.specs[0].n_concepts,
        n_bootstrap=bootstrap,
        n_permutations=permutations,
        level=level,
        seed=seed,
    )
    spec_a, spec_b = inputs.specs
    params = {
        "first": f"{inputs.first[0]}:{inputs.first[1]}",
        "second": f"{inputs.second[0]}:{inputs.second[1]}",
        "bootstrap": bootstrap,
        "permutations": permutations,
        "level": level,
        "seed": seed,
        "concepts_sha256": spec_a.concepts_sha256,
        "analysis_version": diff_version(inputs),
    }
    run = result_rows.add_analysis_run(
        session,
        "diff",
        params,
        seed=seed,
        input_hashes={**spec_a.input_hashes, **spec_b.input_hashes},
        device="cpu",
        seconds=time.perf_counter() - start,
    )

    def finite(value: float) -> float | None:
        return float(value) if np.isfinite(value) else None

    row = ResultDiff(
        analysis_id=run.analysis_id,
        first_test=inputs.first[0],
        first_result_id=inputs.first[1],
        second_test=inputs.second[0],
        second_result_id=inputs.second[1],
        space_a=spec_a.space_a,
        space_b=spec_b.space_a,
        space_a_sha256=spec_a.space_a_sha256,
        space_b_sha256=spec_b.space_a_sha256,
        n_concepts=spec_a.n_concepts,
        concepts_sha256=spec_a.concepts_sha256,
        first_statistic=result.statistic_a,
        second_statistic=result.statistic_b,
        difference=result.difference,
        ci_low=finite(result.ci_low),
        ci_high=finite(result.ci_high),
        level=level,
        p_value=result.p_value,
        n_bootstrap=bootstrap,
        n_permutations=permutations,
        seed=seed,
        analysis_version=diff_version(inputs),
    )
    session.add(row)
    session.flush()
    paired = paired_over_subjects(session, inputs, seed)
    if paired is not None:
        n_subjects, tests = paired
        for inference in result_rows.inference_rows(
            "diff", row.result_id, n_subjects, {"tests": tests}, prefix="paired_"
        ):
            session.add(inference)
    if permutations > 0:
        session.add(
            PermutationNull(
                test="diff",
                result_id=row.result_id,
                n_permutations=permutations,
                seed=seed,
                values=json.dumps([float(v) for v in result.null]),
            )
        )
    return row


def diff(
    wh: Warehouse,
    first: str,
    second: str,
    *,
    bootstrap: int = 1000,
    permutations: int = 1000,
    level: float = 0.95,
    seed: int | None = None,
    force: bool = False,
) -> ResultDiff:
    """Test the difference between two stored results over the same concepts and store it.

    ``first`` and ``second`` are ``TEST:ID`` references (``2v2:17``; tests rsa, 2v2, cka,
    reg2v2). The difference is first minus second, with a percentile interval over paired
    concept resamples and a two-sided sign-flip p-value of the per-concept jackknife
    differences. An identical stored difference (same results, settings and seed; any seed
    when none is given) is returned unless ``force``.

    Raises:
        ConfigError: Bad references, unsupported tests, changed inputs or other concepts.
        NotFoundError: A result that does not exist.
    """
    seed = check_seed(seed)
    inputs = diff_inputs(wh, first, second)
    return transaction(
        wh,
        lambda session: diff_in(
            wh,
            session,
            inputs,
            bootstrap=bootstrap,
            permutations=permutations,
            level=level,
            seed=seed,
            force=force,
        ),
        what=f"difference of {first} and {second}",
    )


DIFF_COLUMNS = (
    "result_id",
    "first_test",
    "first_result_id",
    "second_test",
    "second_result_id",
    "space_a",
    "space_b",
    "n_concepts",
    "first_statistic",
    "second_statistic",
    "difference",
    "ci_low",
    "ci_high",
    "level",
    "p_value",
    "n_bootstrap",
    "n_permutations",
    "seed",
)


def diff_table(rows: list[ResultDiff], p_fdr: families.FDR | None = None) -> Any:
    """Stored differences as an Arrow table; with a sweep's ``p_fdr``, a column of it too."""
    import pyarrow as pa

    table = pa.Table.from_pylist([{c: getattr(r, c) for c in DIFF_COLUMNS} for r in rows])
    if p_fdr is None:
        return table
    values = [families.p_fdr_of(p_fdr, row) for row in rows]
    return table.append_column("p_fdr", pa.array(values, type=pa.float64()))
