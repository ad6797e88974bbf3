"""Reads and writes of analysis results: the one place that knows the results tables.

Each stored comparison is an ``analysis_runs`` row (parameters, seed, versions, input hashes),
a ``results_rsa`` / ``results_2v2`` row and, with permutations, its null distribution in
``permutation_nulls``, all added in the caller's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from semwh.runs.options import ComparisonOptions
from semwh.runs.provenance import (
    canonical_json,
    library_versions,
    params_sha256,
    semwh_version,
)
from semwh.runs.records import ResultRecord
from semwh.warehouse.models import (
    AnalysisRun,
    PermutationNull,
    Result2v2,
    ResultRecovery,
    ResultRSA,
)

ComparisonRow = ResultRSA | Result2v2

RESULT_MODELS: dict[str, type[ResultRSA] | type[Result2v2]] = {
    "rsa": ResultRSA,
    "2v2": Result2v2,
}


def result_model(test: str) -> type[ResultRSA] | type[Result2v2]:
    return RESULT_MODELS[test]


def add_analysis_run(
    session: Session,
    kind: str,
    params: dict[str, Any],
    *,
    seed: int | None,
    input_hashes: dict[str, Any],
    device: str | None,
    seconds: float | None,
    identity: dict[str, Any] | None = None,
) -> AnalysisRun:
    """Add an ``analysis_runs`` row; ``identity`` (default ``params``) is what gets hashed."""
    run = AnalysisRun(
        kind=kind,
        params=canonical_json(params),
        params_sha256=params_sha256(params if identity is None else identity),
        seed=seed,
        semwh_version=semwh_version(),
        library_versions=canonical_json(library_versions()),
        input_hashes=canonical_json(input_hashes),
        device=device,
        seconds=seconds,
        finished_at=datetime.utcnow(),
    )
    session.add(run)
    session.flush()
    return run


def _key_filter(
    model: type[ResultRSA] | type[Result2v2],
    space_a: str,
    space_b: str,
    concepts_sha256: str,
    options: ComparisonOptions,
) -> list[Any]:
    clauses: list[Any] = [
        model.space_a == space_a,
        model.space_b == space_b,
        model.concepts_sha256 == concepts_sha256,
        model.similarity == options.similarity,
        model.n_permutations == options.permutations,
    ]
    if model is ResultRSA:
        clauses.append(ResultRSA.method == options.metric)
    else:
        clauses.append(Result2v2.distance == options.metric)
    return clauses


def matching_rows(
    session: Session,
    space_a: str,
    space_b: str,
    concepts_sha256: str,
    options: ComparisonOptions,
    *,
    any_seed: bool,
) -> list[tuple[ComparisonRow, AnalysisRun]]:
    """Stored comparisons with the same spaces, concepts, options and (unless ``any_seed``)
    seed, newest first, with the analysis run that produced each."""
    model = result_model(options.test)
    clauses = _key_filter(model, space_a, space_b, concepts_sha256, options)
    if not any_seed:
        clauses.append(model.seed.is_(None) if options.seed is None else model.seed == options.seed)
    query = (
        select(model, AnalysisRun)
        .join(AnalysisRun, AnalysisRun.analysis_id == model.analysis_id)
        .where(*clauses)
        .order_by(model.result_id.desc())
    )
    return [(row, run) for row, run in session.execute(query).all()]


def is_same_analysis(
    row: ComparisonRow, run: AnalysisRun, input_hashes: dict[str, Any], bootstrap: int
) -> bool:
    """Whether a stored row answers a request: same space contents and bootstrap size.

    A row with a bootstrap interval also answers a request without one: the bootstrap draws
    from its own stream, so the statistic and p-value are the same either way (and the
    results tables hold one row per spaces, concepts, options and seed).
    """
    params = json.loads(run.params)
    stored = int(params.get("bootstrap", 0))
    return json.loads(run.input_hashes) == input_hashes and bootstrap in (0, stored)


def add_comparison(session: Session, record: ResultRecord) -> ComparisonRow:
    """Add the analysis run, result row and null distribution of ``record``."""
    spec = record.spec
    opts = spec.options
    run = add_analysis_run(
        session,
        opts.test,
        spec.params(),
        seed=opts.seed,
        input_hashes=spec.input_hashes,
        device=record.device,
        seconds=record.seconds,
    )
    common: dict[str, Any] = dict(
        analysis_id=run.analysis_id,
        space_a=spec.space_a,
        space_b=spec.space_b,
        n_concepts=spec.n_concepts,
        concepts_sha256=spec.concepts_sha256,
        similarity=opts.similarity,
        p_value=record.p_value,
        n_permutations=opts.permutations,
        seed=opts.seed,
        null_mean=record.null_mean,
        null_q95=record.null_q95,
        ci_low=record.ci_low,
        ci_high=record.ci_high,
    )
    row: ComparisonRow
    if opts.test == "rsa":
        row = ResultRSA(method=opts.metric, rho=record.statistic, **common)
    else:
        assert record.n_pairs is not None
        row = Result2v2(
            distance=opts.metric, accuracy=record.statistic, n_pairs=record.n_pairs, **common
        )
    session.add(row)
    session.flush()
    if record.null is not None and opts.permutations > 0:
        assert opts.seed is not None
        session.add(
            PermutationNull(
                test=opts.test,
                result_id=row.result_id,
                n_permutations=opts.permutations,
                seed=opts.seed,
                values=json.dumps([float(v) for v in record.null]),
            )
        )
    return row


def delete_comparison(session: Session, test: str, row: ComparisonRow) -> None:
    """Delete a result row and its null; its analysis run stays as a record of what ran."""
    session.execute(
        delete(PermutationNull).where(
            PermutationNull.test == test, PermutationNull.result_id == row.result_id
        )
    )
    session.delete(row)
    session.flush()


def test_of(row: ComparisonRow) -> str:
    return "rsa" if isinstance(row, ResultRSA) else "2v2"


def get_comparison(session: Session, test: str, result_id: int) -> ComparisonRow | None:
    row = session.get(result_model(test), result_id)
    return row if isinstance(row, ResultRSA | Result2v2) else None


def null_values(session: Session, test: str, result_id: int) -> list[float] | None:
    row = session.get(PermutationNull, (test, result_id))
    return None if row is None else list(json.loads(row.values))


def set_p_fdr(session: Session, test: str, result_id: int, p_fdr: float | None) -> None:
    """Write one row's FDR-adjusted p-value (a plain column: no key or index changes)."""
    model: Any = ResultRecovery if test == "recovery" else result_model(test)
    row = session.get(model, result_id)
    if row is not None:
        row.p_fdr = p_fdr


COMPARISON_COLUMNS = (
    "test",
    "result_id",
    "analysis_id",
    "space_a",
    "space_b",
    "n_concepts",
    "similarity",
    "metric",
    "statistic",
    "n_pairs",
    "p_value",
    "p_fdr",
    "n_permutations",
    "seed",
    "null_mean",
    "null_q95",
    "ci_low",
    "ci_high",
)


def comparison_table(rows: Sequence[ComparisonRow]) -> pa.Table:
    """Stored comparison rows as one Arrow table (RSA and 2 vs 2 side by side)."""
    records = []
    for row in rows:
        is_rsa = isinstance(row, ResultRSA)
        records.append(
            {
                "test": "rsa" if is_rsa else "2v2",
                "result_id": row.result_id,
                "analysis_id": row.analysis_id,
                "space_a": row.space_a,
                "space_b": row.space_b,
                "n_concepts": row.n_concepts,
                "similarity": row.similarity,
                "metric": row.method if isinstance(row, ResultRSA) else row.distance,
                "statistic": row.rho if isinstance(row, ResultRSA) else row.accuracy,
                "n_pairs": None if isinstance(row, ResultRSA) else row.n_pairs,
                "p_value": row.p_value,
                "p_fdr": row.p_fdr,
                "n_permutations": row.n_permutations,
                "seed": row.seed,
                "null_mean": row.null_mean,
                "null_q95": row.null_q95,
                "ci_low": row.ci_low,
                "ci_high": row.ci_high,
            }
        )
    schema = pa.schema(
        [
            ("test", pa.string()),
            ("result_id", pa.int64()),
            ("analysis_id", pa.int64()),
            ("space_a", pa.string()),
            ("space_b", pa.string()),
            ("n_concepts", pa.int64()),
            ("similarity", pa.string()),
            ("metric", pa.string()),
            ("statistic", pa.float64()),
            ("n_pairs", pa.int64()),
            ("p_value", pa.float64()),
            ("p_fdr", pa.float64()),
            ("n_permutations", pa.int64()),
            ("seed", pa.int64()),
            ("null_mean", pa.float64()),
            ("null_q95", pa.float64()),
            ("ci_low", pa.float64()),
            ("ci_high", pa.float64()),
        ]
    )
    return pa.Table.from_pylist(records, schema=schema)


def vertical(table: pa.Table) -> pa.Table:
    """One row as a two-column (field, value) table that fits a terminal."""
    row = table.to_pylist()[0] if table.num_rows else {}
    return pa.table(
        {
            "field": list(row),
            "value": [
                "" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))
                for v in row.values()
            ],
        }
    )


SUMMARY_COLUMNS = ("result_id", "test", "space_a", "space_b", "statistic", "p_value", "p_fdr")


def summary_table(table: pa.Table, columns: Sequence[str] = SUMMARY_COLUMNS) -> pa.Table:
    """The columns of a results table worth a glance (the rest stay in the warehouse)."""
    return table.select([c for c in columns if c in table.column_names])
