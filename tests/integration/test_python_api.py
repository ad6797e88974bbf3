"""The Python API: docs/python.md's worked example runs as written, and the API's methods are
the library's (same rows, same sandbox, same errors)."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import semwh
from semwh.api import SemanticWarehouse
from semwh.errors import InputError, NotFoundError, ReadOnlyError, WarehouseError
from semwh.warehouse.models import Concept
from tests.conftest import REPO

pytestmark = pytest.mark.integration

DOC = REPO / "docs" / "python.md"
WORKED = "\n## A worked example\n"


def doc_blocks() -> tuple[list[str], list[str]]:
    """The doc's python blocks before its worked example (sketches over files of the
    reader's own: the demo's warehouse, a lab's stimuli), and those of the worked example."""
    text = DOC.read_text(encoding="utf-8")
    assert WORKED in text
    opening, worked = text.split(WORKED, 1)
    return tuple(re.findall(r"```python\n(.*?)```", part, flags=re.S) for part in (opening, worked))


def test_the_worked_example_runs(samples_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """Every block of the worked example runs in order, in one namespace, from an empty
    folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEMWH_SAMPLES", str(samples_dir))
    blocks = doc_blocks()[1]
    assert len(blocks) >= 4
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 (the doc is the test)
    wh = namespace["wh"]
    assert (tmp_path / "lab-report" / "report.html").is_file()
    # The sweep stored by the example is the one layer_curves shows.
    sweep_id = namespace["result"].sweep_id
    shown = wh.curves(word_space="glove50").table.column("sweep_id").to_pylist()
    assert set(shown) == {sweep_id}
    # The ratings space is stored like any other, and the comparison's row is in SQL.
    stored = wh.space("ratings")
    assert np.allclose(stored.matrix, namespace["ratings"])
    row = namespace["row"]
    again = wh.sql(
        "SELECT rho, p_value FROM results_rsa WHERE result_id = $id", {"id": row["result_id"]}
    )
    assert again.rows() == [(row["rho"], row["p_value"])]


def test_the_opening_sketches_call_the_api_as_it_is() -> None:
    """The blocks before the worked example read files that are not here; every call they
    make on ``semwh`` or ``wh`` names a function of the API and binds to its signature."""
    blocks = doc_blocks()[0]
    assert len(blocks) >= 2 and 'semwh.open("semwh-demo")' in blocks[0]
    owners = {"semwh": semwh, "wh": SemanticWarehouse}
    checked = set()
    for block in blocks:
        for node in ast.walk(ast.parse(block)):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in owners
            ):
                continue
            owner, name = node.func.value.id, node.func.attr
            function = getattr(owners[owner], name, None)
            assert callable(function), f"docs/python.md calls {owner}.{name}, which is no API"
            args = [None] * len(node.args) if owner == "semwh" else [None] * (1 + len(node.args))
            assert all(k.arg is not None for k in node.keywords), ast.unparse(node)
            try:
                inspect.signature(function).bind(*args, **{k.arg: None for k in node.keywords})
            except TypeError as exc:
                raise AssertionError(f"docs/python.md: {ast.unparse(node)}: {exc}") from exc
            checked.add(f"{owner}.{name}")
    assert {"semwh.open", "wh.ingest_concepts", "wh.ingest_images", "wh.ingest_rdm"} <= checked


def test_api_results_are_arrow_and_dataframes(tmp_path: Path) -> None:
    wh = semwh.open(tmp_path / "wh", create=True)
    wnids = [f"n{1000000 + i:08d}" for i in range(6)]
    with wh.warehouse.session() as session:
        session.add_all(Concept(concept=w, name=w, origin="file") for w in wnids)
    rng = np.random.default_rng(3)
    wh.add_space("a", wnids, rng.normal(size=(6, 4)))
    wh.add_space("b", wnids, rng.normal(size=(6, 5)), kind="word")
    result = wh.spaces()
    assert len(result) == 2 and result.num_rows == 2
    assert pa.table(result).equals(result.table)
    assert list(result.df()["name"]) == ["a", "b"]
    assert result.pl()["kind"].to_list() == ["external", "word"]
    assert wh.spaces(kind="word").rows()[0][result.columns.index("name")] == "b"
    row = wh.compare("a", "b", test="2v2", permutations=20, seed=5)
    assert row is not None and row["n_concepts"] == 6 and 0 <= row["accuracy"] <= 1
    assert wh.compare("a", "b", test="2v2", permutations=20, seed=5) == row  # reused
    with pytest.raises(ReadOnlyError):
        wh.sql("DROP TABLE spaces")
    # The measures run from Python too, their nulls come back, unknown ids are named.
    cka = wh.compare("a", "b", test="cka", estimator="biased", permutations=15, seed=2)
    assert cka["measure"] == "cka" and cka["estimator"] == "biased"
    assert wh.null("cka", cka["result_id"]).shape == (15,)
    assert wh.null("2v2", row["result_id"]).shape == (20,)
    with pytest.raises(NotFoundError, match="no rsa result with id 999"):
        wh.null("rsa", 999)
    # One wnid per row, or a clear refusal that stores nothing.
    with pytest.raises(InputError, match="2 concepts for 3 vectors"):
        wh.add_space("short", wnids[:2], np.ones((3, 2)))
    assert "short" not in wh.spaces().table.column("name").to_pylist()
    assert repr(wh) == f"semwh.open({str(wh.root)!r})"


def test_open_needs_a_warehouse(tmp_path: Path) -> None:
    with pytest.raises(WarehouseError, match="semwh --warehouse .* init"):
        semwh.open(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()
