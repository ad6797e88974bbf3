"""Results bundles (`semwh bundle`, `semwh verify --bundle`) and the diff of two warehouses
(`semwh diff`), on a real warehouse with a real sweep."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from sqlalchemy import update

import semwh
from semwh.config import ENV_DB
from semwh.errors import ConfigError, InputError, NotFoundError, OutputError
from semwh.results.bundle import MANIFEST, build_bundle
from semwh.results.bundle_check import BundleReport, verify_bundle
from semwh.results.latex import format_p, latex_tables, tex_escape
from semwh.runs.sweep import sweep
from semwh.runs.warehouse_diff import DIFFERENT, IDENTICAL, ONLY_HERE, WITHIN, diff_warehouses
from semwh.vectors import save_space
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import AnalysisRun, Result, Sweep
from tests.conftest import copy_warehouse, run_cli
from tests.factories import warehouse_fixtures
from tests.integration.test_analyze import add_layer_space, add_model, wnids

pytestmark = pytest.mark.integration

N = 10


def build(wh: Warehouse) -> dict[str, object]:
    """A word space and a three-layer model whose layers grow closer to it; one sweep of
    RSA and 2 vs 2 with 19 permutations."""
    rng = np.random.default_rng(5)
    words = rng.normal(size=(N, 6))
    save_space(wh, "words", "word", wnids(N), words)
    ids = add_model(wh, "toy", 3)
    for i, noise in enumerate((3.0, 1.0, 0.3)):
        add_layer_space(wh, "toy", i, ids[i], 3, words + noise * rng.normal(size=words.shape))
    found = sweep(wh, ["toy"], ["words"], tests=["rsa", "2v2"], permutations=19, seed=3)
    return {"sweep_id": found.sweep_id, "words": words}


template, warehouse, world = warehouse_fixtures(build)


@pytest.fixture(scope="module")
def bundled(template: tuple[Path, object], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One bundle (with figures) of the template's sweep, written once."""
    wh = copy_warehouse(template[0], tmp_path_factory.mktemp("b") / "wh")
    out = tmp_path_factory.mktemp("bundles") / "paper"
    info = build_bundle(wh, out)
    assert info.n_results == 6 and "newest complete sweep" in info.selection
    return out


def copy_bundle(bundled: Path, folder: Path) -> Path:
    out = folder / "paper"
    shutil.copytree(bundled, out)
    return out


def test_bundle_holds_tables_figures_definitions_and_a_manifest(bundled: Path) -> None:
    names = {p.relative_to(bundled).as_posix() for p in bundled.rglob("*") if p.is_file()}
    for name in (
        "results/comparisons.csv",
        "results/comparisons.parquet",
        "tables/rsa_words.tex",
        "tables/2v2_words.tex",
        "definitions/sweeps.json",
        "definitions/analysis_runs.json",
        "inputs.json",
        "versions.json",
        "bundle.json",
        "README.md",
        MANIFEST,
    ):
        assert name in names, name
    figures = [n for n in names if n.startswith("figures/")]
    for suffix in (".png", ".pdf", ".svg", ".csv"):
        assert any(n.endswith(suffix) for n in figures), suffix
    assert "figures/CAPTIONS.md" in figures
    listed = (bundled / MANIFEST).read_text().splitlines()
    assert len(listed) == len(names) - 1  # every file but the manifest itself
    rows = pq.read_table(bundled / "results/comparisons.parquet").to_pylist()
    assert {r["test"] for r in rows} == {"rsa", "2v2"} and all(r["p_fdr"] for r in rows)
    tex = (bundled / "tables/rsa_words.tex").read_text()
    assert "\\toprule" in tex and "toy/block2" in tex and "Benjamini--Hochberg" in tex
    inputs = json.loads((bundled / "inputs.json").read_text())
    assert inputs["words"]["content_sha256"] in inputs["words"]["results_computed_from"]
    assert inputs["words"]["vector_files"][0]["sha256"]
    sweeps = json.loads((bundled / "definitions/sweeps.json").read_text())
    assert sweeps[0]["seed"] == 3 and sweeps[0]["n_permutations"] == 19
    assert json.loads((bundled / "versions.json").read_text())["libraries"]["numpy"]


def test_p_values_are_formatted_for_a_table() -> None:
    assert [format_p(p) for p in (0.0004, 0.05, 0.12345, None)] == [
        "$<$0.001",
        "0.050",
        "0.123",
        "--",
    ]


def read_rows(path: Path) -> list[list[str]]:
    """The rows of the CSV file ``path``, header first."""
    with path.open(newline="") as fh:
        return list(csv.reader(fh))


def write_rows(path: Path, rows: list[list[str]]) -> None:
    """Write ``rows`` over the CSV file ``path`` as the bundle writes it."""
    with path.open("w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)


def test_bundle_then_verify_agrees(warehouse: Warehouse, bundled: Path) -> None:
    report = semwh.open(warehouse.root).verify(bundle=bundled)
    assert isinstance(report, BundleReport) and report.ok, report.problems()
    assert sum(f.kind == "result" for f in report.findings) == 6


def test_verify_names_an_altered_a_missing_and_an_extra_file(
    warehouse: Warehouse, bundled: Path, tmp_path: Path
) -> None:
    out = copy_bundle(bundled, tmp_path)
    path = out / "results/comparisons.csv"
    rows = read_rows(path)
    column = rows[0].index("statistic")
    rows[1][column] = repr(float(rows[1][column]) + 0.01)
    write_rows(path, rows)
    (out / "tables/2v2_words.tex").unlink()
    (out / "notes.txt").write_text("mine")
    report = verify_bundle(warehouse, out)
    assert not report.ok
    found = {(f.kind, f.name, f.status) for f in report.problems()}
    assert ("file", "results/comparisons.csv", "altered") in found
    assert ("file", "tables/2v2_words.tex", "missing") in found
    assert ("file", "notes.txt", "extra") in found
    # The edited number is named with its result, and only that result differs.
    differs = [f for f in report.problems() if f.kind == "result"]
    assert len(differs) == 1 and "statistic" in differs[0].detail
    assert f"{rows[1][rows[0].index('test')]}:{rows[1][rows[0].index('result_id')]}" == (
        differs[0].name
    )


def test_verify_without_the_list_of_results_names_the_file(
    warehouse: Warehouse, bundled: Path, tmp_path: Path
) -> None:
    out = copy_bundle(bundled, tmp_path)
    (out / "bundle.json").unlink()
    report = verify_bundle(warehouse, out)
    assert {(f.name, f.status) for f in report.problems()} == {
        ("bundle.json", "missing"),
        ("bundle.json", "unreadable"),
    }


def test_verify_names_a_result_changed_in_the_warehouse(
    warehouse: Warehouse, bundled: Path
) -> None:
    with warehouse.session() as session:
        target = session.query(Result).filter_by(measure="rsa").order_by(Result.result_id).first()
        assert target is not None
        session.execute(
            update(Result)
            .where(Result.result_id == target.result_id)
            .values(statistic=target.statistic + 0.5)
        )
    report = verify_bundle(warehouse, bundled)
    assert not report.ok
    (finding,) = [f for f in report.problems() if f.kind == "result"]
    assert finding.name == f"rsa:{target.result_id}"
    assert "statistic" in finding.detail and "drifted" in finding.detail
    # The LaTeX table of that result no longer shows the warehouse's numbers either.
    assert {(f.kind, f.name) for f in report.problems() if f.kind != "result"} == {
        ("table", "tables/rsa_words.tex")
    }


def test_cli_verify_bundle_names_the_file_and_exits_1(
    warehouse: Warehouse, bundled: Path, tmp_path: Path
) -> None:
    out = copy_bundle(bundled, tmp_path)
    (out / "README.md").write_text("edited")
    bad = run_cli("--warehouse", str(warehouse.root), "verify", "--bundle", str(out), check=False)
    assert bad.returncode == 1 and "file README.md: altered" in bad.stderr


def test_bundle_refuses_a_warehouse_folder_or_a_folder_with_files(
    warehouse: Warehouse, bundled: Path, tmp_path: Path
) -> None:
    api = semwh.open(warehouse.root)
    with pytest.raises(OutputError, match="inside the warehouse"):
        api.bundle(warehouse.root / "paper", figures=False)
    full = tmp_path / "full"
    full.mkdir()
    (full / "data.csv").write_text("x")
    with pytest.raises(OutputError, match="already holds files"):
        api.bundle(full, figures=False)
    with pytest.raises(OutputError, match="cannot write the bundle"):
        api.bundle(full / "data.csv" / "paper", figures=False)
    with pytest.raises(OutputError, match="only replaces a previous bundle"):
        api.bundle(full, figures=False, force=True)
    assert (full / "data.csv").read_text() == "x"
    proc = run_cli("--warehouse", str(warehouse.root), "bundle", str(full), check=False)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "already holds files" in proc.stderr
    # --force replaces a previous bundle, and nothing is left beside it.
    out = copy_bundle(bundled, tmp_path / "bundles")
    again = api.bundle(out, results=["rsa:1", "3", "rsa:1"], figures=False, force=True)
    assert again.n_results == 2 and not (out / "figures").exists()
    assert again.selection == "result rsa:1, result 3"
    assert [p.name for p in out.parent.iterdir()] == ["paper"]


def test_a_killed_bundle_leaves_no_bundle_and_the_next_one_clears_its_folder(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    dead = subprocess.Popen(["true"])  # the bundling process, gone before it finished
    dead.wait()
    out = tmp_path / "out" / "paper"
    partial = out.parent / f".paper.partial-{dead.pid}"
    partial.mkdir(parents=True)
    (partial / "results").mkdir()
    (partial / "results" / "comparisons.csv").write_text("half")
    (out.parent / f".paper.old-{dead.pid}").mkdir()  # killed while replacing a bundle
    info = build_bundle(warehouse, out, results=["2"], figures=False)
    assert info.n_results == 1 and [p.name for p in out.parent.iterdir()] == ["paper"]
    assert json.loads((out / "bundle.json").read_text())["results"] == [[None, "2v2", 2]]


def test_diff_of_a_warehouse_with_its_copy_is_identical(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    copy = copy_warehouse(warehouse.root, tmp_path / "copy")
    report = diff_warehouses(warehouse, copy.root)
    assert report.ok and len(report.pairs) == 6
    assert {p.status for p in report.pairs} == {IDENTICAL}
    assert {p.inputs for p in report.pairs} == {"same"}
    assert {p.versions for p in report.pairs} == {"same"}
    assert "6 identical" in report.summary()
    # The warehouse itself (here through a link) is no other warehouse: all identical would
    # say nothing.
    (tmp_path / "link").symlink_to(warehouse.root)
    with pytest.raises(ConfigError, match="is this warehouse itself"):
        diff_warehouses(warehouse, tmp_path / "link")


def test_diff_names_results_of_a_changed_input(
    warehouse: Warehouse, world: dict, tmp_path: Path
) -> None:
    other = copy_warehouse(warehouse.root, tmp_path / "rerun")
    # The rerun: the word space re-ingested with other vectors, the sweep run again.
    words = np.asarray(world["words"])
    save_space(other, "words", "word", wnids(N), words[::-1].copy(), replace=True)
    sweep(other, ["toy"], ["words"], tests=["rsa"], permutations=19, seed=3)
    report = diff_warehouses(warehouse, other.root)
    assert not report.ok
    changed = [p for p in report.pairs if p.status == DIFFERENT]
    assert {p.measure for p in changed} == {"rsa"} and len(changed) == 3
    for pair in changed:
        assert pair.inputs.startswith("differ: 'words' content")
        assert pair.row()["diff_statistic"] > 0
    # The 2 vs 2 results were not rerun: the other warehouse's newest row is the copied one.
    assert {p.status for p in report.pairs if p.measure == "2v2"} == {IDENTICAL}
    proc = run_cli(
        "--warehouse", str(warehouse.root), "diff", str(other.root), "-f", "json", check=False
    )
    assert proc.returncode == 1 and "3 different" in proc.stderr
    rows = json.loads(proc.stdout)
    assert sorted(r["space_a"] for r in rows if r["status"] == DIFFERENT) == [
        f"toy/block{i}" for i in range(3)
    ]


def test_diff_tolerance_and_results_of_one_warehouse(
    warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = copy_warehouse(warehouse.root, tmp_path / "other")
    with other.session() as session:
        ids = sorted(r.result_id for r in session.query(Result).filter_by(measure="2v2"))
        session.execute(
            update(Result)
            .where(Result.result_id == ids[0])
            .values(statistic=Result.statistic + 1e-9)
        )
        session.query(Result).filter(Result.result_id == ids[1]).delete()
        # The analyses of the other warehouse ran on a GPU with another numpy.
        for run in session.query(AnalysisRun):
            versions = {**json.loads(run.library_versions), "numpy": "0.0-other"}
            run.library_versions = json.dumps(versions)
            run.device = "cuda"
    # SEMWH_DB names this process's registry, never the other warehouse's.
    monkeypatch.setenv(ENV_DB, warehouse.db_url)
    exact = diff_warehouses(warehouse, other.root)
    assert {p.status for p in exact.pairs} == {IDENTICAL, DIFFERENT, ONLY_HERE}
    loose = semwh.open(warehouse.root).diff_warehouse(other.root, tolerance=1e-6)
    statuses = {p.status for p in loose.pairs}
    assert statuses == {IDENTICAL, WITHIN, ONLY_HERE} and not loose.ok
    (within,) = [p for p in loose.pairs if p.status == WITHIN]
    assert 0 < within.max_abs_diff <= 1e-6
    assert within.device == "analysis cpu vs cuda"
    assert "numpy" in within.versions and "0.0-other" in within.versions


def test_verify_reads_nothing_outside_the_bundle(
    warehouse: Warehouse, bundled: Path, tmp_path: Path
) -> None:
    out = copy_bundle(bundled, tmp_path)
    # A file of the bundle replaced by a link to an identical file elsewhere is not the bundle's.
    outside = tmp_path / "elsewhere.md"
    (out / "README.md").rename(outside)
    (out / "README.md").symlink_to(outside)
    found = {(f.name, f.status) for f in verify_bundle(warehouse, out).problems()}
    assert found == {("README.md", "altered")}
    # A manifest naming a path out of the bundle is refused before anything is read.
    (tmp_path / "secret").write_text("x")
    digest = hashlib.sha256(b"x").hexdigest()
    for rel in ("../secret", str(tmp_path / "secret")):
        manifest = out / MANIFEST
        manifest.write_text(f"{digest}  {rel}\n")
        with pytest.raises(InputError, match="not a path inside the bundle"):
            verify_bundle(warehouse, out)
    with pytest.raises(NotFoundError, match="it is a file"):
        verify_bundle(warehouse, out / "README.md")
    # The manifest itself: a link out of the bundle, or bytes that are not text.
    (tmp_path / "forged").write_text(f"{digest}  README.md\n")
    (out / MANIFEST).unlink()
    (out / MANIFEST).symlink_to(tmp_path / "forged")
    with pytest.raises(InputError, match="link to a file outside the bundle"):
        verify_bundle(warehouse, out)
    (out / MANIFEST).unlink()
    (out / MANIFEST).write_bytes(b"\xff\xfe" + digest.encode())
    with pytest.raises(InputError, match="not UTF-8 text"):
        verify_bundle(warehouse, out)


def test_force_replaces_only_a_bundle_and_never_a_folder_holding_the_warehouse(
    warehouse: Warehouse, bundled: Path, tmp_path: Path
) -> None:
    out = copy_bundle(bundled, tmp_path)
    (out / "thesis.tex").write_text("mine")
    with pytest.raises(OutputError, match=r"not part of its bundle \(thesis.tex\)"):
        build_bundle(warehouse, out, results=["2"], figures=False, force=True)
    assert (out / "thesis.tex").read_text() == "mine"
    # A bundle folder that the warehouse was later moved into.
    (out / "thesis.tex").unlink()
    home = copy_warehouse(warehouse.root, out / "wh")
    with pytest.raises(OutputError, match="the warehouse .* is inside it"):
        build_bundle(home, out, results=["2"], figures=False, force=True)
    assert (home.root / "registry.duckdb").is_file()


def reseal(out: Path, rel: str) -> None:
    """Edit the manifest line of ``rel`` to match the file's new content (a forger's step)."""
    digest = hashlib.sha256((out / rel).read_bytes()).hexdigest()
    lines = (out / MANIFEST).read_text().splitlines()
    kept = [line for line in lines if not line.endswith(f"  {rel}")]
    (out / MANIFEST).write_text("".join(f"{x}\n" for x in [*kept, f"{digest}  {rel}"]))


def test_verify_names_a_row_added_to_a_results_table_with_its_manifest_line(
    warehouse: Warehouse, bundled: Path, tmp_path: Path
) -> None:
    out = copy_bundle(bundled, tmp_path)
    path = out / "results/comparisons.csv"
    rows = read_rows(path)
    forged = list(rows[1])
    forged[rows[0].index("result_id")] = "999"
    write_rows(path, [*rows, forged])
    reseal(out, "results/comparisons.csv")
    (out / "tables/extra.tex").write_text((out / "tables/rsa_words.tex").read_text())
    reseal(out, "tables/extra.tex")
    found = {(f.name, f.status): f.detail for f in verify_bundle(warehouse, out).problems()}
    assert set(found) == {
        ("results/comparisons.csv", "differs"),
        ("tables/extra.tex", "differs"),
    }
    assert ":999 (sweep " in found[("results/comparisons.csv", "differs")]


def test_definitions_are_checked_against_the_warehouse_and_the_manifest_is_sealed(
    warehouse: Warehouse, bundled: Path, tmp_path: Path
) -> None:
    out = copy_bundle(bundled, tmp_path)
    sealed = hashlib.sha256((out / MANIFEST).read_bytes()).hexdigest()
    sweeps = json.loads((out / "definitions/sweeps.json").read_text())
    sweeps[0]["seed"] = 4
    (out / "definitions/sweeps.json").write_text(json.dumps(sweeps))
    reseal(out, "definitions/sweeps.json")
    report = verify_bundle(warehouse, out)
    ((name, status, detail),) = [(f.name, f.status, f.detail) for f in report.problems()]
    assert (name, status) == ("definitions/sweeps.json", "differs") and "[0].seed" in detail
    # Files the warehouse cannot recompute (README) are sealed by the manifest's own hash.
    assert report.manifest_sha256 != sealed and report.manifest_sha256 in report.summary()
    info = build_bundle(warehouse, tmp_path / "again", results=["2"], figures=False)
    assert info.manifest_sha256 == hashlib.sha256((info.folder / MANIFEST).read_bytes()).hexdigest()


def test_each_latex_table_has_its_own_label() -> None:
    def row(sweep: int, target: str) -> dict[str, object]:
        return {
            "test": "rsa", "space_b": target, "level": "concept", "options": "{}",
            "sweep_id": sweep, "space_a": "toy/block0", "n_concepts": 10,
            "statistic": 0.5, "p_value": 0.0, "p_fdr": 1.0, "n_permutations": 19,
        }  # fmt: skip

    # Two sweeps of one target; two targets whose names clean up alike.
    rows = [row(1, "words"), row(2, "words"), row(1, "a&b"), row(1, "a%b")]
    tables = latex_tables({"comparisons": rows, "recovery": [], "differences": []}, {})
    labels = [re.findall(r"\\label\{(.*?)\}", text) for text in tables.values()]
    assert all(len(found) == 1 for found in labels) and len({found[0] for found in labels}) == 4
    assert "$<$0.001 & 1.000" in tables["tables/rsa_words.tex"]  # p = 0 and p = 1


def test_files_arriving_at_out_while_bundling_are_kept(
    warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import semwh.results.bundle as bundle_module

    out = tmp_path / "out" / "paper"
    versions = bundle_module.versions_now

    def meanwhile() -> dict[str, object]:
        # Another process (a second bundle, a copy) writes to OUT while this one works.
        out.mkdir()
        (out / "theirs.csv").write_text("theirs")
        return versions()

    monkeypatch.setattr(bundle_module, "versions_now", meanwhile)
    with pytest.raises(OutputError, match="already holds files"):
        build_bundle(warehouse, out, results=["2"], figures=False)
    assert [p.name for p in out.parent.iterdir()] == ["paper"]
    assert (out / "theirs.csv").read_text() == "theirs"


def test_names_are_escaped_for_latex() -> None:
    assert tex_escape('w"o,r&d%s_$ü #{x}~^') == (
        'w"o,r\\&d\\%s\\_\\$ü \\#\\{x\\}\\textasciitilde{}\\textasciicircum{}'
    )
    assert tex_escape("a<b>c|d\\e") == (
        "a\\textless{}b\\textgreater{}c\\textbar{}d\\textbackslash{}e"
    )


def test_a_sweep_that_did_not_complete_is_not_bundled(
    warehouse: Warehouse, world: dict, tmp_path: Path
) -> None:
    with warehouse.session() as session:
        session.execute(update(Sweep).values(status="failed"))
    with pytest.raises(ConfigError, match=r"--sweep \d+ is failed, not complete"):
        build_bundle(warehouse, tmp_path / "out", sweep_ids=[int(world["sweep_id"])])
    assert not (tmp_path / "out").exists()
