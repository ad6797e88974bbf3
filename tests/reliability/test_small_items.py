"""Small inputs that used to end in a traceback, a silent misreading or a stray file: each is
now one line through semwh's errors (or read the one documented way)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import semwh
from semwh.errors import (
    ConfigError,
    InputError,
    InvalidNameError,
    NotFoundError,
    SandboxError,
    WarehouseError,
)
from semwh.names import check_name, name_list
from semwh.warehouse.migrate import init_warehouse, open_warehouse
from semwh.warehouse.models import Concept
from semwh.warehouse.readonly import run_sql
from semwh.workflow.runfile import parse_config
from tests.conftest import migrated_warehouse, run_cli
from tests.forkserver import shared_server
from tests.reliability.conftest import open_wh

pytestmark = pytest.mark.integration

WNIDS = [f"n{10000000 + k:08d}" for k in range(6)]


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def _api(root: Path) -> semwh.SemanticWarehouse:
    wh = semwh.open(root, create=True)
    with wh.warehouse.session() as session:
        session.add_all(Concept(concept=w, name=w, origin="file") for w in WNIDS)
    return wh


# -- the registry -------------------------------------------------------------------------------


def test_a_registry_that_cannot_be_reached_is_one_line(tmp_path: Path) -> None:
    missing = run_cli(
        "--warehouse",
        str(tmp_path / "a"),
        "--db",
        "sqlite:////missing/y.sqlite",
        "init",
        check=False,
    )
    assert missing.returncode == 1
    assert "cannot connect to the registry" in _one_error_line(missing.stderr)
    assert "/missing" in missing.stderr
    # The folder exists, the database does not: a reading command creates no empty file.
    (tmp_path / "b").mkdir()
    url = f"sqlite:///{tmp_path / 'b' / 'y.sqlite'}"
    read = run_cli("--warehouse", str(tmp_path / "b"), "--db", url, "query", "spaces", check=False)
    assert read.returncode == 1 and "y.sqlite does not exist" in _one_error_line(read.stderr)
    assert not (tmp_path / "b" / "y.sqlite").exists()


def test_a_refused_postgresql_connection_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("psycopg2")
    url = "postgresql://someone:secret@127.0.0.1:1/db"
    (tmp_path / "w").mkdir()
    proc = run_cli("--warehouse", str(tmp_path / "w"), "--db", url, "query", "spaces", check=False)
    assert proc.returncode == 1
    line = _one_error_line(proc.stderr)
    assert "cannot connect to the registry" in line and "refused" in line
    assert "secret" not in line


def test_init_inside_another_warehouse_is_refused(tmp_path: Path) -> None:
    outer = migrated_warehouse(tmp_path / "outer")
    inner = open_wh(outer.root / "vectors" / "inner")
    with pytest.raises(WarehouseError, match=r"inside the warehouse .*outer"):
        init_warehouse(inner)
    assert not (outer.root / "vectors" / "inner").exists()


def test_init_prints_no_duckdb_engine_warning(tmp_path: Path) -> None:
    proc = run_cli("--warehouse", str(tmp_path / "w"), "init")
    assert "reflection on indices" not in proc.stderr and "warn" not in proc.stderr.lower()


def test_query_list_honours_the_format(tmp_path: Path) -> None:
    as_csv = run_cli("--warehouse", str(tmp_path / "w"), "query", "--list", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert list(rows[0]) == ["name", "parameters", "purpose"]
    assert "layer_curves" in {r["name"] for r in rows}
    as_json = run_cli("--warehouse", str(tmp_path / "w"), "query", "--list", "-f", "json")
    assert {r["name"] for r in json.loads(as_json.stdout)} == {r["name"] for r in rows}


# -- Ctrl-C -------------------------------------------------------------------------------------


def test_ctrl_c_during_a_grid_is_one_line_and_exit_130(tmp_path: Path) -> None:
    from tests.integration.test_grids import _fill

    forks = shared_server(Path(tempfile.gettempdir()) / f"semwh-tests-{os.getpid()}")
    wh = migrated_warehouse(tmp_path / "wh")
    _fill(wh)
    wh.dispose()
    args = ("--warehouse", str(wh.root), "analyze", "grid", "--a", "vis", "--b", "txt")
    child = forks.spawn(*args, "-n", "10000000", "--seed", "1")
    time.sleep(1.5)
    assert forks.wait(child, timeout=0) is None, child.stderr  # still working
    os.kill(child.pid, signal.SIGINT)
    assert forks.wait(child, timeout=60) == 130
    assert "interrupted" in _one_error_line(child.stderr)


# -- spaces and names ---------------------------------------------------------------------------


def test_add_space_checks_concepts_and_vectors_as_ingest_does(tmp_path: Path) -> None:
    wh = _api(tmp_path / "wh")
    with pytest.raises(InputError, match=r"shape \(6, 0\)"):
        wh.add_space("flat", WNIDS, np.zeros((6, 0)))
    for bad in ("a/b", "", " n10000000", "x\x01"):
        with pytest.raises(InputError, match="row 5"):
            wh.add_space("bad", [*WNIDS[:5], bad], np.random.default_rng(0).normal(size=(6, 3)))
    assert wh.spaces().num_rows == 0
    wh.add_space("good", WNIDS, np.random.default_rng(0).normal(size=(6, 3)))
    assert wh.spaces().num_rows == 1


def test_full_width_look_alike_names_are_refused(tmp_path: Path) -> None:
    wh = _api(tmp_path / "wh")
    wh.add_space("glove50", WNIDS, np.random.default_rng(1).normal(size=(6, 3)))
    with pytest.raises(InvalidNameError, match="write it 'glove50'"):
        wh.add_space("ｇｌｏｖｅ５０", WNIDS, np.random.default_rng(2).normal(size=(6, 3)))
    with pytest.raises(InvalidNameError, match="NFKC"):
        check_name("ﬁsh")  # a ligature
    assert check_name("café") == "café" and check_name("犬") == "犬"


def test_one_string_is_one_name_in_run_files_and_the_api(tmp_path: Path) -> None:
    base = {
        "images": {"folder": str(tmp_path)},
        "words": [{"name": "w", "package": "p"}],
        "models": [{"name": "m"}],
    }
    config = parse_config({**base, "analysis": {"tests": "rsa"}}, tmp_path)
    assert config.analysis.tests == ("rsa",)
    grid = parse_config({**base, "grids": [{"a": "m", "b": "w", "tests": "2v2"}]}, tmp_path)
    assert grid.grids[0].tests == ("2v2",)
    with pytest.raises(ConfigError, match=r"\[analysis\] tests = 5"):
        parse_config({**base, "analysis": {"tests": 5}}, tmp_path)
    assert name_list(["a", "b"], "x") == ["a", "b"]
    wh = _api(tmp_path / "wh")
    with pytest.raises(NotFoundError, match="efficientnet_lite0") as caught:
        wh.sweep("efficientnet_lite0", "glove", permutations=5)
    assert "e, f, f" not in str(caught.value)


def test_a_vectors_folder_must_hold_the_warehouses_files(tmp_path: Path) -> None:
    wh = _api(tmp_path / "wh")
    wh.add_space("s", WNIDS, np.random.default_rng(0).normal(size=(6, 3)))
    everything = open_warehouse(wh.root, vectors="/")
    with pytest.raises(SandboxError, match=r"vectors folder / .*does not hold"):
        run_sql(everything, "SELECT count(*) FROM read_text('/etc/hostname')")
    copy = tmp_path / "mounted"
    shutil.copytree(wh.warehouse.vectors_root, copy)
    elsewhere = open_warehouse(wh.root, vectors=str(copy))
    assert run_sql(elsewhere, "SELECT count(*) FROM vectors").rows() == [(6,)]


# -- model folders ------------------------------------------------------------------------------


def _tiny_bert(folder: Path) -> None:
    """A 1-layer BERT with 16 positions, random weights and a word-piece vocabulary."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir()
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "dog", "cat"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=8,
        max_position_embeddings=16,
    )
    BertModel(config).save_pretrained(folder)


def test_broken_text_model_folders_are_one_line(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from semwh.text.loaders import load_text_model, resolve_source

    good = tmp_path / "bert"
    _tiny_bert(good)
    with pytest.raises(ConfigError, match=r"--max-length 100000 .* give at most 16"):
        load_text_model(resolve_source(f"hf:{good}"), max_length=100000)
    assert load_text_model(resolve_source(f"hf:{good}"), max_length=16).max_length == 16
    wrong = tmp_path / "abc"
    shutil.copytree(good, wrong)
    config = json.loads((wrong / "config.json").read_text())
    (wrong / "config.json").write_text(json.dumps({**config, "hidden_size": "abc"}))
    with pytest.raises(InputError, match=r"config.json.*'hidden_size'"):
        load_text_model(resolve_source(f"hf:{wrong}"))
    cut = tmp_path / "cut"
    shutil.copytree(good, cut)
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(InputError, match="its weights .*truncated or damaged"):
        load_text_model(resolve_source(f"hf:{cut}"))


def test_broken_vision_model_folders_are_one_line(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    from semwh.extract.networks import model_spec

    good = tmp_path / "vit"
    config = ViTConfig(
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=8,
        image_size=32,
        patch_size=16,
    )
    torch.manual_seed(0)
    ViTModel(config).save_pretrained(good)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(good)
    wrong = tmp_path / "abc"
    shutil.copytree(good, wrong)
    values = json.loads((wrong / "config.json").read_text())
    (wrong / "config.json").write_text(json.dumps({**values, "hidden_size": "abc"}))
    with pytest.raises(InputError, match=r"cannot read the config .*'hidden_size'"):
        model_spec(f"hf:{wrong}")
    weights = good / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(InputError, match="cannot load the weights .*truncated or damaged"):
        model_spec(f"hf:{good}").build()
