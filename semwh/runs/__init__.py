"""Orchestration: load spaces from the warehouse, run the statistics, store results.

The statistics themselves are pure functions in :mod:`semwh.analyze`; this package decides
which vectors they see, resolves and records seeds, finds results stored before, and writes
every result with its provenance (parameters, seed, versions, input hashes) in one
transaction.
"""

from semwh.runs.comparison import (
    compare,
    compare_spec,
    permutation_null,
    plan_comparison,
    run_comparison,
    shared_concepts,
)
from semwh.runs.grid import GridOptions, GridResult, grid, peak_layer
from semwh.runs.measures import compare_measure, measure
from semwh.runs.options import ComparisonOptions, MeasureOptions
from semwh.runs.provenance import concepts_sha256, derive_seed, draw_seed, library_versions
from semwh.runs.records import ComparisonSpec, ResultRecord
from semwh.runs.recovery import (
    RecoveryInputs,
    RecoveryRecord,
    RecoveryReport,
    RecoverySkip,
    recovery,
    recovery_inputs,
    recovery_table,
    run_recovery_layer,
    sweep_recovery_table,
)
from semwh.runs.result_rows import comparison_table
from semwh.runs.sweep import Skipped, SweepOptions, SweepResult, run_or_skip, sweep

__all__ = [
    "ComparisonOptions",
    "ComparisonSpec",
    "GridOptions",
    "GridResult",
    "MeasureOptions",
    "RecoveryInputs",
    "RecoveryRecord",
    "RecoveryReport",
    "RecoverySkip",
    "ResultRecord",
    "Skipped",
    "SweepOptions",
    "SweepResult",
    "compare",
    "compare_measure",
    "compare_spec",
    "comparison_table",
    "concepts_sha256",
    "derive_seed",
    "draw_seed",
    "grid",
    "library_versions",
    "measure",
    "peak_layer",
    "permutation_null",
    "plan_comparison",
    "recovery",
    "recovery_inputs",
    "recovery_table",
    "run_comparison",
    "run_or_skip",
    "run_recovery_layer",
    "shared_concepts",
    "sweep",
    "sweep_recovery_table",
]
