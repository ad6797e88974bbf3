"""curves show each result's bootstrap interval and noise ceiling; results keep a bootstrap seed

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 13:00:00.000000

* ``results``: ``bootstrap_seed``, the parent seed of a result's bootstrap resamples when it
  is not the result's own ``seed`` (a sweep gives every layer of one model against one
  target the same one, so that their intervals are paired); NULL everywhere else, as for
  every older result (their resamples came from ``seed``).
* ``sweep_curves`` and ``layer_curves`` gain, for each test they show, its bootstrap interval
  (``ci_low_2v2``, ``ci_high_2v2``, ``ci_low_rsa``, ``ci_high_rsa``) and its noise ceiling in
  the same pattern (``ceiling_low_2v2``, ``ceiling_high_2v2``, ``ceiling_low_rsa``,
  ``ceiling_high_rsa``; the same values as ``ceiling_lower_<test>`` / ``ceiling_upper_<test>``,
  which stay).
* ``measure_curves`` gains ``ci_low``, ``ci_high``, ``ceiling_low`` and ``ceiling_high`` (one
  measure a row).

The downgrade drops the column (the results keep their numbers; a result whose resamples came
from a bootstrap seed then reads as one whose resamples came from its seed, which
``semwh verify`` of the older semwh reports as drifted; ``semwh db downgrade`` counts them
first) and restores the views of 0010.
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The views this revision rebuilds, in the order they are dropped (views that read others
#: first).
VIEWS = ("layer_curves", "sweep_curves", "measure_curves")

#: The interval and ceiling columns each test of the curves gains.
CURVE_COLUMNS = tuple(
    f"{kind}_{end}_{test}"
    for test in ("2v2", "rsa")
    for kind, end in (("ci", "low"), ("ci", "high"), ("ceiling", "low"), ("ceiling", "high"))
)


def _earlier(file: str) -> Any:
    """An earlier revision's module (its view definitions)."""
    path = Path(__file__).with_name(file)
    spec = importlib.util.spec_from_file_location(f"semwh_revision_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


def _old_views() -> dict[str, str]:
    """The views of revision 0010, by name."""
    return _earlier("0010_image_level.py").new_views()


def new_views() -> dict[str, str]:
    """The views of this revision, by name, in the order they are created."""
    old = _old_views()
    sweep = _replace(
        old["sweep_curves"],
        "    p.permute\nFROM ranked AS p",
        "    p.permute,\n"
        "    t.ci_low AS ci_low_2v2,\n"
        "    t.ci_high AS ci_high_2v2,\n"
        "    t.ceiling_lower AS ceiling_low_2v2,\n"
        "    t.ceiling_upper AS ceiling_high_2v2,\n"
        "    r.ci_low AS ci_low_rsa,\n"
        "    r.ci_high AS ci_high_rsa,\n"
        "    r.ceiling_lower AS ceiling_low_rsa,\n"
        "    r.ceiling_upper AS ceiling_high_rsa\n"
        "FROM ranked AS p",
    )
    layer = _replace(
        old["layer_curves"],
        "level, n_items, permute\nFROM sweep_curves",
        f"level, n_items, permute,\n    {', '.join(CURVE_COLUMNS)}\nFROM sweep_curves",
    )
    measure = old["measure_curves"]
    for before, after in (
        (
            "n_subjects, ceiling_lower, ceiling_upper,\n",
            "n_subjects, ceiling_lower, ceiling_upper, ci_low, ci_high,\n",
        ),
        (
            "    permute\nFROM ranked",
            "    permute,\n    ci_low,\n    ci_high,\n    ceiling_lower AS ceiling_low,\n"
            "    ceiling_upper AS ceiling_high\nFROM ranked",
        ),
    ):
        measure = _replace(measure, before, after)
    return {"sweep_curves": sweep, "layer_curves": layer, "measure_curves": measure}


def _drop_views() -> None:
    for view in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")


def upgrade() -> None:
    _drop_views()
    if op.get_bind().dialect.name == "duckdb":
        op.execute("ALTER TABLE results ADD COLUMN IF NOT EXISTS bootstrap_seed BIGINT")
    else:
        op.add_column("results", sa.Column("bootstrap_seed", sa.BigInteger(), nullable=True))
    r8 = _earlier("0008_one_results_table.py")
    for view in new_views().values():
        op.execute(r8.in_dialect(view))


def downgrade_drops(conn: sa.Connection) -> dict[str, int]:
    """What the downgrade loses, counted before it runs (``semwh db downgrade`` lists them and
    asks for ``--yes``): the bootstrap seeds of results whose resamples came from one."""
    n = conn.execute(
        sa.text("SELECT count(*) FROM results WHERE bootstrap_seed IS NOT NULL")
    ).scalar()
    return {"results: bootstrap seeds (a sweep's paired intervals)": int(n or 0)}


def downgrade() -> None:
    # Every view that reads results goes while the column is dropped: DuckDB refuses to
    # alter a table a view depends on only through its binder, so they are rebuilt as 0010
    # made them.
    r10 = _earlier("0010_image_level.py")
    for view in r10.VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    # DuckDB drops a column only from a table without indexes.
    op.drop_index("ix_results_measure_spaces", table_name="results")
    op.drop_index(op.f("ix_results_analysis_id"), table_name="results")
    op.drop_column("results", "bootstrap_seed")
    op.create_index(op.f("ix_results_analysis_id"), "results", ["analysis_id"], unique=False)
    op.create_index(
        "ix_results_measure_spaces", "results", ["measure", "space_a", "space_b"], unique=False
    )
    views, r8 = _old_views(), _earlier("0008_one_results_table.py")
    for view in reversed(r10.VIEWS):
        op.execute(r8.in_dialect(views[view]))
