"""Named queries over a warehouse of synthetic results with known answers, and table export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from semwh.config import load_settings
from semwh.errors import ConfigError, InputError, NotFoundError
from semwh.results.named import (
    bind_params,
    export_table,
    list_queries,
    load_query,
    parse_assignments,
    parse_query,
    run_query,
)
from semwh.vectors import load_space
from semwh.warehouse.layout import Warehouse, warehouse_from_settings
from semwh.warehouse.migrate import init_warehouse
from semwh.warehouse.readonly import run_sql
from tests.conftest import run_cli
from tests.factories import add_subject_rdms
from tests.integration.test_query_data import CURVES, LAYERS, RECOVERY, build_synthetic

pytestmark = pytest.mark.integration

REQUIRED_QUERIES = {
    "layer_curves",
    "peak_layer",
    "first_significant_depth",
    "recovery_by_layer",
    "model_comparison",
    "pair_disagreement",
    "external_join_csv",
    "external_join_parquet",
}


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    """One synthetic warehouse per module: every test here only reads it."""
    wh = warehouse_from_settings(load_settings(tmp_path_factory.mktemp("synth") / "wh"))
    init_warehouse(wh)
    build_synthetic(wh)
    _add_rdm(wh, tmp_path_factory.mktemp("rdm"))
    return wh


def _add_rdm(wh: Warehouse, folder: Path) -> None:
    """Two subjects' dissimilarities of the word vectors: an RDM space with noise ceilings."""
    add_subject_rdms(wh, folder, "words", n_subjects=2, seed=1)


def _rows(result) -> list[dict]:  # type: ignore[no-untyped-def]
    return result.table.to_pylist()


def test_every_query_has_a_complete_header_and_uses_its_parameters() -> None:
    queries = list_queries()
    assert REQUIRED_QUERIES <= {q.name for q in queries}
    for q in queries:
        assert q.purpose and q.columns, q.name
        used = set(re.findall(r"\$([a-z_][a-z0-9_]*)", q.sql))
        declared = {p.name for p in q.params}
        assert used == declared, f"{q.name}: uses {used}, declares {declared}"
        for p in q.params:
            assert p.description, f"{q.name}: parameter {p.name} lacks a description"


def _external_file(tmp_path: Path, fmt: str) -> Path:
    import pyarrow as pa

    table = pa.table(
        {"concept": ["n00000001", "n00000002", "n09999999"], "rating": [1.5, 2.5, 9.0]}
    )
    path = tmp_path / f"ratings.{fmt}"
    if fmt == "csv":
        path.write_text("concept,rating\nn00000001,1.5\nn00000002,2.5\nn09999999,9.0\n")
    else:
        pq.write_table(table, path)
    return path


def _external_images_file(tmp_path: Path, fmt: str) -> Path:
    """Per-image ratings keyed by stimulus id (``<concept>_<image_id>`` in the synthetic data)."""
    import pyarrow as pa

    table = pa.table({"stimulus": ["n00000001_1", "n00000001_3", "nowhere_1"], "rating": [1, 3, 9]})
    path = tmp_path / f"image_ratings.{fmt}"
    if fmt == "csv":
        path.write_text("stimulus,rating\nn00000001_1,1\nn00000001_3,3\nnowhere_1,9\n")
    else:
        pq.write_table(table, path)
    return path


GRID_QUERIES = {"grid_cells", "peak_inference"}
# The synthetic recovery applies (its concepts are the model's classes), so no run was skipped;
# tests/integration/test_recovery_own_concepts.py reads recovery_skipped's rows.
# No image was scored against its concept centroids here; tests/integration/
# test_image_scores.py reads the image_scores queries' rows.
IMAGE_SCORE_QUERIES = {"image_scores", "image_scores_join_csv", "image_scores_join_parquet"}
EMPTY_HERE = GRID_QUERIES | IMAGE_SCORE_QUERIES | {"recovery_skipped"}


def test_every_query_runs_and_returns_its_declared_columns(synth: Warehouse, tmp_path: Path):
    params = {
        "pair_disagreement": {"space_a": "toy/l2", "space_b": "words"},
        "space_vectors": {"space": "words"},
        "external_join_csv": {"path": str(_external_file(tmp_path, "csv"))},
        "external_join_parquet": {"path": str(_external_file(tmp_path, "parquet"))},
        "external_join_images_csv": {"path": str(_external_images_file(tmp_path, "csv"))},
        "external_join_images_parquet": {"path": str(_external_images_file(tmp_path, "parquet"))},
        "image_scores_join_csv": {"path": str(_external_images_file(tmp_path, "csv"))},
        "image_scores_join_parquet": {"path": str(_external_images_file(tmp_path, "parquet"))},
    }
    for q in list_queries():
        result = run_query(synth, q.name, params.get(q.name), allow_read=[tmp_path])
        # The synthetic warehouse holds no grid; tests/integration/test_grids.py reads these
        # two queries' rows on one. Their columns are checked here all the same.
        assert result.table.num_rows > 0 or q.name in EMPTY_HERE, q.name
        declared = list(q.columns)
        if q.name.startswith("image_scores_join"):
            declared = declared[: declared.index("is_current") + 1] + ["rating"]
        elif q.name.startswith("external_join_images"):
            declared = declared[: declared.index("n_recovered") + 1] + ["rating"]
        elif q.name.startswith("external_join"):
            declared = declared[: declared.index("recovery_rate") + 1] + ["rating"]
        assert result.columns == declared, q.name


def test_layer_curves_defaults_match_the_view_and_add_null_bands(synth: Warehouse) -> None:
    rows = _rows(run_query(synth, "layer_curves"))
    view = run_sql(
        synth,
        "SELECT model, layer, word_space, accuracy_2v2, p_fdr_2v2, rho_rsa FROM layer_curves "
        "ORDER BY word_space, model, depth_index",
    ).table.to_pylist()
    assert [{k: r[k] for k in view[0]} for r in rows] == view
    toy = [r for r in rows if r["model"] == "toy"]
    assert [r["accuracy_2v2"] for r in toy] == CURVES["toy"][0]
    assert all(r["null_mean_2v2"] == 0.5 and r["null_q95_2v2"] == 0.62 for r in toy)
    assert {r["is_random"] for r in rows if r["model"] == "toy-random"} == {True}
    assert not any(r["is_random"] for r in toy)
    only = _rows(run_query(synth, "layer_curves", {"model": "toy-random"}))
    assert {r["model"] for r in only} == {"toy-random"} and len(only) == 4


def test_peak_and_first_significant_layer(synth: Warehouse) -> None:
    peaks = {r["model"]: r for r in _rows(run_query(synth, "peak_layer"))}
    assert peaks["toy"]["peak_layer_2v2"] == "l2"
    assert peaks["toy"]["peak_accuracy_2v2"] == 0.90
    assert peaks["toy"]["last_layer"] == "l3"
    assert peaks["toy"]["peak_layer_rsa"] == "l3"
    assert peaks["toy-random"]["peak_layer_2v2"] == "l1"

    first = {r["model"]: r for r in _rows(run_query(synth, "first_significant_depth"))}
    assert first["toy"]["first_layer"] == "l1"
    assert first["toy"]["n_significant"] == 3
    assert first["toy-random"]["first_layer"] is None
    assert first["toy-random"]["n_significant"] == 0
    strict = {
        r["model"]: r
        for r in _rows(run_query(synth, "first_significant_depth", {"alpha": "0.0015"}))
    }
    assert strict["toy"]["first_layer"] == "l2"
    assert strict["toy"]["n_significant"] == 1


def test_recovery_by_layer(synth: Warehouse) -> None:
    rows = _rows(run_query(synth, "recovery_by_layer", {"model": "toy"}))
    assert [r["layer"] for r in rows] == LAYERS
    assert [r["recovery_rate"] for r in rows] == [k / n for n, k in RECOVERY["toy"]]
    assert [r["relative_depth"] for r in rows] == pytest.approx([0, 1 / 3, 2 / 3, 1])


def test_model_comparison_bins_relative_depth(synth: Warehouse) -> None:
    rows = _rows(run_query(synth, "model_comparison", {"bins": "2"}))
    got = {(r["model"], r["depth_bin"]): r for r in rows}
    acc = CURVES["toy"][0]
    # Relative depths 0, 1/3 fall in bin 0; 2/3 and 1 in bin 1.
    assert got[("toy", 0)]["mean_accuracy_2v2"] == pytest.approx((acc[0] + acc[1]) / 2)
    assert got[("toy", 1)]["mean_accuracy_2v2"] == pytest.approx((acc[2] + acc[3]) / 2)
    assert got[("toy", 1)]["depth_low"] == 0.5 and got[("toy", 1)]["depth_high"] == 1.0
    assert len(rows) == 4


def _pearson_pairs(matrix: np.ndarray) -> np.ndarray:
    """Slow reference: Pearson similarity of every pair i < j, row by row."""
    n = matrix.shape[0]
    return np.array(
        [np.corrcoef(matrix[i], matrix[j])[0, 1] for i in range(n) for j in range(i + 1, n)]
    )


def test_pair_disagreement_matches_a_numpy_reference(synth: Warehouse) -> None:
    a, b = load_space(synth, "toy/l1"), load_space(synth, "words")
    assert a.concept_ids == b.concept_ids
    sa, sb = _pearson_pairs(a.matrix), _pearson_pairs(b.matrix)
    za, zb = (sa - sa.mean()) / sa.std(), (sb - sb.mean()) / sb.std()
    pairs = [(a.concept_ids[i], a.concept_ids[j]) for i in range(8) for j in range(i + 1, 8)]
    order = sorted(range(len(pairs)), key=lambda k: -abs(za[k] - zb[k]))[:5]

    rows = _rows(
        run_query(synth, "pair_disagreement", {"space_a": "toy/l1", "space_b": "words", "top": "5"})
    )
    assert [(r["concept_1"], r["concept_2"]) for r in rows] == [pairs[k] for k in order]
    # Vectors are stored as float32, so agreement is to float32 precision.
    assert [r["disagreement"] for r in rows] == pytest.approx(
        [za[k] - zb[k] for k in order], abs=1e-5
    )
    assert [r["similarity_a"] for r in rows] == pytest.approx([sa[k] for k in order], abs=1e-5)
    assert rows[0]["n_concepts"] == 8
    assert rows[0]["name_1"] in {"dog", "cat", "car", "bus", "apple", "pear", "chair", "table"}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_external_join_reads_the_file_through_a_bound_path(
    synth: Warehouse, tmp_path: Path, fmt: str
) -> None:
    path = _external_file(tmp_path, fmt)
    rows = _rows(
        run_query(synth, f"external_join_{fmt}", {"path": str(path)}, allow_read=[tmp_path])
    )
    # The file's third concept is not in the warehouse: inner join drops it.
    assert [(r["concept"], r["rating"]) for r in rows] == [("n00000001", 1.5), ("n00000002", 2.5)]
    for r in rows:
        assert r["model"] == "toy"
        assert (r["n_images"], r["n_top1_correct"]) == (3, 2)
        assert r["top1_accuracy"] == pytest.approx(2 / 3)
        # The concept's misclassified image succeeds at 2 of the 4 layers.
        assert (r["n_recovery_tests"], r["recovery_rate"]) == (4, 0.5)


def test_parameters_are_bound_not_spliced(synth: Warehouse) -> None:
    hostile = "words' OR 1=1 --"
    assert run_query(synth, "layer_curves", {"word_space": hostile}).table.num_rows == 0


def test_parameter_errors_name_the_valid_parameters(synth: Warehouse) -> None:
    with pytest.raises(ConfigError, match=r"no parameter 'modle'.*valid: model, word_space"):
        run_query(synth, "layer_curves", {"modle": "toy"})
    with pytest.raises(ConfigError, match=r"needs parameter space_a.*-p space_a="):
        run_query(synth, "pair_disagreement", {"space_b": "words"})
    with pytest.raises(ConfigError, match="not a valid DOUBLE"):
        run_query(synth, "first_significant_depth", {"alpha": "five percent"})
    with pytest.raises(NotFoundError, match="known queries: .*layer_curves"):
        run_query(synth, "layer_curve")
    with pytest.raises(ConfigError, match="key=value"):
        parse_assignments(["alpha"])


def test_header_parsing_defaults_and_errors(tmp_path: Path) -> None:
    q = load_query("first_significant_depth")
    assert bind_params(q) == {"alpha": 0.05, "model": None, "word_space": None, "level": "concept"}
    assert bind_params(q, {"model": "NULL", "alpha": "0.1"})["model"] is None
    bad = tmp_path / "bad.sql"
    bad.write_text("-- name: bad\n-- purpose: x\n-- param: alpha = 1\n-- columns: a\nSELECT 1")
    with pytest.raises(InputError, match=r"bad.sql:3: parameter line"):
        parse_query(bad.read_text(), bad)
    bad.write_text("-- name: other\n-- purpose: x\n-- columns: a\nSELECT 1")
    with pytest.raises(InputError, match="differs from the file name"):
        parse_query(bad.read_text(), bad)


@pytest.mark.parametrize(
    ("table", "name", "n_rows"),
    # vectors: the synthetic spaces' 72 rows and the 8 concepts of the RDM space.
    [("results_2v2", "r.parquet", 16), ("layer_curves", "c.csv", 8), ("vectors", "v.parquet", 80)],
)
def test_export_writes_parquet_or_csv_by_extension(
    synth: Warehouse, tmp_path: Path, table: str, name: str, n_rows: int
) -> None:
    out = tmp_path / "out" / name
    info = export_table(synth, table, out)
    assert info.n_rows == n_rows
    if out.suffix == ".parquet":
        assert pq.read_table(out).num_rows == n_rows
    else:
        lines = out.read_text().splitlines()
        assert len(lines) == n_rows + 1 and lines[0].startswith("model,layer")


def test_export_rejects_unknown_tables_and_extensions(synth: Warehouse, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="choose from: .*results_2v2"):
        export_table(synth, 'results_2v2"; DROP TABLE concepts; --', tmp_path / "x.parquet")
    with pytest.raises(ConfigError, match=r"\.parquet or \.csv"):
        export_table(synth, "concepts", tmp_path / "x.xlsx")


def test_query_and_export_commands(synth: Warehouse, tmp_path: Path) -> None:
    w = ["--warehouse", str(synth.root)]
    listing = run_cli(*w, "query", "--list").stdout
    assert all(name in listing for name in REQUIRED_QUERIES)
    # Each command starts a fresh interpreter, so one call per path through the command.
    out = tmp_path / "peaks.json"
    run_cli(*w, "query", "peak_layer", "-p", "model=toy", "--format", "json", "--out", str(out))
    assert json.loads(out.read_text())[0]["peak_layer_2v2"] == "l2"
    bad = run_cli(*w, "query", "layer_curves", "-p", "x=1", check=False)
    assert bad.returncode == 1 and "valid: model, word_space" in bad.stderr
    run_cli(*w, "export", "results_rsa", str(tmp_path / "rsa.csv"))
    assert len((tmp_path / "rsa.csv").read_text().splitlines()) == 9
