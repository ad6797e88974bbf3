"""The Python API keeps up with the CLI: every command has a method (or is declared CLI-only,
with the reason), every option of a command reaches its method, and the methods added for the
ingests and analyses store the rows the library and the CLI store, on a real warehouse."""

from __future__ import annotations

import inspect
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import typer

import semwh
from semwh import ingest, runs
from semwh.api import SemanticWarehouse
from semwh.cli import app
from semwh.errors import ConfigError, InputError, OutputError
from semwh.extract import ExtractionOptions
from semwh.runs.grid import GridOptions
from semwh.runs.measures import measure
from semwh.runs.repair import TO_DO
from semwh.runs.sweep import SweepOptions
from semwh.warehouse.layout import Warehouse
from tests.conftest import run_cli
from tests.factories import noisy_rdms, warehouse_fixtures
from tests.integration.test_analyze_recovery import MODEL, build_recovery_world, reference

pytestmark = pytest.mark.integration

# The CLI's commands and the Python method that does the same, with the CLI options whose
# parameter has another name in Python (None: an option of the terminal only, such as the
# output format of a printed table).
PRINTED = {"fmt": None, "out": None, "force": None}
SPACES = {"a": "space_a", "b": "space_b"}
# A family's level options are fields of its options (``level`` is a grid's confidence level).
LEVELS = {"level": "item_level", "bootstrap_over": "resample"}
API: dict[str, tuple[str, dict[str, str | None]]] = {
    "init": ("open", {}),
    "ingest concepts": ("ingest_concepts", {}),
    "ingest images": ("ingest_images", {}),
    "ingest words": ("ingest_words", {}),
    "ingest space": ("ingest_space", {}),
    "ingest rdm": ("ingest_rdm", {}),
    "embed": ("embed", {}),
    "extract": ("extract", {"layout": "layouts"}),
    "analyze compare": ("compare", {**SPACES, "measure": "test", "option": None}),
    "analyze rsa": ("compare", SPACES),
    "analyze 2v2": ("compare", SPACES),
    "analyze cka": ("compare", SPACES),
    "analyze knn": ("compare", SPACES),
    "analyze reg2v2": ("compare", SPACES),
    "analyze measures": ("measures", {}),
    "analyze diff": ("diff", {}),
    "analyze recovery": ("recovery", {}),
    "analyze image-scores": ("image_scores", {}),
    "db copy": ("copy_to", {"to": "url"}),
    "analyze sweep": (
        "sweep",
        {
            "words": "word_spaces",
            "no_random": "include_random",
            "with_recovery": "recovery",
            "diff_random": "control_diffs",
            "option": "measure_options",
            **LEVELS,
        },
    ),
    "analyze grid": ("grid", {"option": "measure_options", **LEVELS}),
    "analyze peak": ("peak", {"option": "measure_options", **LEVELS}),
    "sql": ("sql", PRINTED),
    # --list is the method queries(); -p key=value are params or keywords.
    "query": ("query", {**PRINTED, "param": "params", "list_": None}),
    "report": ("report", {}),
    "plot rdm": ("plot_rdm", {}),
    "plot mds": ("plot_mds", {}),
    "plot layers": ("plot_layers", {}),
    "export": ("export", {}),
    "verify": ("verify", {"sweep": "sweep_id", "fmt": None}),
    "bundle": ("bundle", {"sweep": "sweep_ids", "result": "results"}),
    "diff": ("diff_warehouse", {"other_warehouse": "other", "fmt": None}),
    "repair": ("repair", {}),
    "run": ("run", {}),
}
CLI_ONLY = {
    "db upgrade": "schema administration (semwh.warehouse.migrate); open() checks the schema",
    "db downgrade": "schema administration (semwh.warehouse.migrate)",
    "db current": "schema administration (semwh.warehouse.migrate)",
    "db history": "schema administration (semwh.warehouse.migrate)",
    "demo": "a tour in one command; docs/python.md's worked example is its Python form",
    "models": "a catalogue of model sources, not of a warehouse "
    "(semwh.extract.catalog.list_models and describe_model)",
}
# Methods with **keywords: the options they pass on are the parameters of these.
PASSED_ON: dict[str, tuple[Callable[..., Any], ...]] = {
    "extract": (ExtractionOptions,),
    "compare": (runs.compare, measure),
    "sweep": (SweepOptions,),
    "grid": (GridOptions,),
    "peak": (GridOptions,),
    "ingest_images": (ingest.ingest_images,),
    "ingest_words": (ingest.ingest_words,),
}


def cli_commands() -> Iterator[tuple[str, list[str]]]:
    """Every command of the `semwh` app ("ingest space", ...) and its parameters' names."""

    def walk(command: Any, path: list[str]) -> Iterator[tuple[str, list[str]]]:
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            yield " ".join(path), [p.name for p in command.params]
            return
        for name, sub in sorted(subcommands.items()):
            yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), [])


def accepted(method: str) -> set[str]:
    """The keywords a method of the API (or ``semwh.open``) takes, with those it passes on."""
    target = semwh.open if method == "open" else getattr(SemanticWarehouse, method)
    names = set(inspect.signature(target).parameters)
    for callee in PASSED_ON.get(method, ()):
        names |= set(inspect.signature(callee).parameters)
    return names


def api_gaps(
    commands: dict[str, list[str]],
    mapping: dict[str, tuple[str, dict[str, str | None]]],
    cli_only: dict[str, str],
) -> list[str]:
    """What keeps the API behind the CLI: commands without a method, declarations for
    commands that are gone, and options a method does not take."""
    gaps = [
        f"`semwh {c}` has no Python method (add one to semwh/api.py, and to API here)"
        for c in sorted(set(commands) - set(mapping) - set(cli_only))
    ]
    gaps += [f"`semwh {c}` is declared here but gone from the CLI" for c in
             sorted((set(mapping) | set(cli_only)) - set(commands))]  # fmt: skip
    gaps += [f"`semwh {c}` is declared both ways" for c in sorted(set(mapping) & set(cli_only))]
    for command, (method, renamed) in sorted(mapping.items()):
        if command not in commands:
            continue
        takes = accepted(method)
        for option in commands[command]:
            name = renamed.get(option, option)
            if name is not None and name not in takes:
                gaps.append(f"`semwh {command}` has {option!r}; {method}() lacks {name!r}")
    return gaps


def test_every_cli_command_has_a_python_counterpart() -> None:
    commands = dict(cli_commands())
    assert {"ingest concepts", "analyze diff", "repair", "db upgrade"} <= set(commands)
    assert api_gaps(commands, API, CLI_ONLY) == []
    # Every public method does what a command does, or is one of Python's own readers.
    python_only = {"space", "spaces", "curves", "null", "add_space", "queries", "root"}
    methods = {m for m in vars(SemanticWarehouse) if not m.startswith("_")}
    assert methods - {m for m, _ in API.values()} <= python_only


def test_the_check_finds_a_missing_method_or_option() -> None:
    commands = dict(cli_commands())
    without = {c: m for c, m in API.items() if c != "analyze diff"}
    assert api_gaps(commands, without, CLI_ONLY) == [
        "`semwh analyze diff` has no Python method (add one to semwh/api.py, and to API here)"
    ]
    wrong = {**API, "analyze diff": ("recovery", {})}
    assert "`semwh analyze diff` has 'level'; recovery() lacks 'level'" in api_gaps(
        commands, wrong, CLI_ONLY
    )
    gone = {**CLI_ONLY, "ingest wnids": "gone"}
    assert api_gaps(commands, API, gone) == [
        "`semwh ingest wnids` is declared here but gone from the CLI"
    ]


# One warehouse with concepts, a word space, a model's layer spaces, per-image shards and
# predictions (the recovery tests' world), built once; each test gets a copy.
template, warehouse, rworld = warehouse_fixtures(build_recovery_world, world="rworld")


def api(wh: Warehouse) -> SemanticWarehouse:
    return semwh.open(wh.root)


def write_features(path: Path, wnids: list[str], matrix: np.ndarray) -> None:
    names = [f"f{j}" for j in range(matrix.shape[1])]
    lines = [",".join(["wnid", *names])]
    lines += [
        ",".join([w, *(repr(float(v)) for v in row)]) for w, row in zip(wnids, matrix, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")


def concepts_file(path: Path, ids: list[str]) -> Path:
    """A concepts file of ``semwh ingest concepts``: one id a line, then its name."""
    path.write_text("".join(f"{concept} concept_{i}\n" for i, concept in enumerate(ids)))
    return path


def test_ingest_concepts_from_a_file_and_imagenet1k(tmp_path: Path) -> None:
    wh = semwh.open(tmp_path / "wh", create=True)
    with pytest.raises(ConfigError, match="nothing to ingest"):
        wh.ingest_concepts()
    listed = concepts_file(tmp_path / "concepts.txt", ["n02084071", "n09999991"])
    report = wh.ingest_concepts(listed, no_wordnet=True)
    assert sorted(report.added) == ["n02084071", "n09999991"]
    assert report.wordnet == "WordNet not used (disabled)"
    report = wh.ingest_concepts(imagenet1k=True, no_wordnet=True)
    assert len(report.added) == 1000
    assert wh.sql("SELECT count(*) FROM concepts").rows() == [(1002,)]
    assert wh.ingest_concepts(listed, wordnet=False).unchanged == 2


def test_ingest_space_and_rdm_from_files(warehouse: Warehouse, rworld, tmp_path: Path) -> None:
    wh = api(warehouse)
    wnids = rworld["wnids"]
    ratings = np.random.default_rng(4).normal(size=(len(wnids), 3))
    write_features(tmp_path / "ratings.csv", wnids, ratings)
    report = wh.ingest_space("ratings", tmp_path / "ratings.csv")
    assert (report.status, report.n_concepts, report.dim) == ("created", len(wnids), 3)
    stored = wh.space("ratings")
    assert stored.concept_ids == sorted(wnids)
    order = [wnids.index(w) for w in stored.concept_ids]
    np.testing.assert_allclose(stored.matrix, ratings[order], rtol=1e-6)
    assert wh.ingest_space("ratings", tmp_path / "ratings.csv").status == "unchanged"
    write_features(tmp_path / "bad.csv", ["n07777777", *wnids[:3]], ratings[:4])
    with pytest.raises(InputError, match="n07777777"):
        wh.ingest_space("bad", tmp_path / "bad.csv")
    # Three subjects' RDMs of the word vectors: a target with its noise ceilings.
    np.save(tmp_path / "rdms.npy", noisy_rdms(rworld["words"], 3, seed=2))
    (tmp_path / "keys.txt").write_text("\n".join(wnids) + "\n")
    rdm = wh.ingest_rdm("subjects", tmp_path / "rdms.npy", keys=tmp_path / "keys.txt")
    assert (rdm.name, rdm.n_concepts, rdm.n_subjects) == ("subjects", len(wnids), 3)
    stored_ceilings = wh.sql(
        "SELECT method, lower, upper FROM noise_ceilings WHERE space = 'subjects' ORDER BY 1"
    ).rows()
    assert stored_ceilings == sorted((m, lo, hi) for m, (lo, hi) in rdm.ceilings.items())
    assert wh.spaces(kind="rdm").table.column("name").to_pylist() == ["subjects"]
    row = wh.compare(f"{MODEL}/stage2", "subjects", test="rsa")
    assert row["n_subjects"] == 3 and row["n_concepts"] == len(wnids)


def test_diff_stores_the_number_the_cli_stores(warehouse: Warehouse, tmp_path: Path) -> None:
    wh = api(warehouse)
    deep = wh.compare(f"{MODEL}/stage2", "words", test="2v2", memory="64M")  # as --memory 64M
    shallow = wh.compare(f"{MODEL}/stage0", "words", test="2v2")
    twin = tmp_path / "twin"
    shutil.copytree(wh.root, twin)
    first, second = f"2v2:{deep['result_id']}", f"2v2:{shallow['result_id']}"
    row = wh.diff(first, second, bootstrap=40, permutations=40, seed=3)
    assert row["difference"] == pytest.approx(deep["accuracy"] - shallow["accuracy"])
    assert (row["n_bootstrap"], row["n_permutations"], row["seed"]) == (40, 40, 3)
    assert wh.diff(first, second, bootstrap=40, permutations=40, seed=3) == row  # stored: reused
    run_cli("--warehouse", str(twin), "analyze", "diff", first, second,
            "--bootstrap", "40", "-n", "40", "--seed", "3")  # fmt: skip
    columns = "difference, ci_low, ci_high, p_value, n_concepts"
    by_cli = semwh.open(twin).sql(f"SELECT {columns} FROM results_diff").rows()
    assert by_cli == [tuple(row[c] for c in columns.split(", "))]


def test_recovery_rows_are_the_pure_functions(warehouse: Warehouse, rworld) -> None:
    wh = api(warehouse)
    rows = wh.recovery(MODEL, "words", layers="stage2")
    assert [r["layer"] for r in rows] == ["stage2"]
    want = reference(rworld, "stage2")
    assert (rows[0]["n_images"], rows[0]["n_success"]) == (want.n_images, want.n_success)
    assert rows[0]["accuracy"] == want.success_rate and rows[0]["p_value"] == want.p_value
    every = wh.recovery(MODEL, "words")
    assert [r["layer"] for r in every] == ["stage0", "stage1", "stage2"]
    assert every[2]["result_id"] == rows[0]["result_id"]  # stored: reused
    again = wh.recovery(MODEL, "words", layers=["stage2"], force=True)
    assert (
        again[0]["result_id"] != rows[0]["result_id"] and again[0]["accuracy"] == want.success_rate
    )


def test_repair_names_the_ingest_that_rewrites_a_damaged_space(tmp_path: Path) -> None:
    wh = semwh.open(tmp_path / "wh", create=True)
    ids = [f"n{3000000 + i:08d}" for i in range(5)]
    wh.ingest_concepts(concepts_file(tmp_path / "concepts.txt", ids), no_wordnet=True)
    source = tmp_path / "ext.csv"
    write_features(source, ids, np.arange(10.0).reshape(5, 2))
    wh.ingest_space("ext", source)
    assert wh.repair().ok
    ((path,),) = wh.sql("SELECT path FROM vector_files WHERE kind = 'concepts'").rows()
    (wh.warehouse.vectors_root / path).write_bytes(b"")
    report = wh.repair()
    (entry,) = report.damage
    assert entry.path.endswith(Path(path).name) and entry.status == TO_DO
    assert str(source) in entry.repair and not report.ok
    assert wh.ingest_space("ext", source).status == "repaired"
    assert wh.repair().ok


def test_export_and_the_catalogues(warehouse: Warehouse, tmp_path: Path) -> None:
    wh = api(warehouse)
    out = tmp_path / "spaces.parquet"
    info = wh.export("spaces", out)
    assert info.n_rows == wh.spaces().num_rows == 4
    assert sorted(pq.read_table(out).column("name").to_pylist()) == sorted(
        wh.spaces().table.column("name").to_pylist()
    )
    with pytest.raises(OutputError):
        wh.export("spaces", out)
    assert wh.export("spaces", out, force=True).n_rows == 4
    with pytest.raises(OutputError):
        wh.export("spaces", wh.root / "inside.csv")
    assert {"layer_curves", "space_vectors"} <= set(wh.queries().table.column("name").to_pylist())
    names = wh.measures().table.column("measure").to_pylist()
    assert {"rsa", "2v2", "cka", "knn", "reg2v2"} <= set(names)


def test_backend_options_reach_the_library(warehouse: Warehouse) -> None:
    wh = api(warehouse)
    with pytest.raises(ConfigError, match="--ray-address"):
        wh.sweep(MODEL, "words", ray_address="auto", permutations=0)
    with pytest.raises(ConfigError, match="not both"):
        wh.grid(MODEL, "words", backend="ray", mapper=map)
    with pytest.raises(ConfigError, match="--actors"):
        wh.extract("toynet", actors=2)
    result = wh.sweep(MODEL, "words", tests="rsa", permutations=0, mapper=map)
    assert len(result.rows) == 3


def test_run_reads_the_run_file_and_checks_the_report_folder_first(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    wh = api(warehouse)
    (tmp_path / "photos").mkdir()
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "notes.txt").write_text("mine")
    config = tmp_path / "run.toml"
    config.write_text(
        '[images]\nfolder = "photos"\n\n[[words]]\nname = "glove"\nfile = "glove.txt"\n\n'
        '[[models]]\nname = "efficientnet_lite0"\n\n[report]\nout = "' + str(tmp_path / "report")
        + '"\n'
    )  # fmt: skip
    stages: list[tuple[str, str]] = []
    with pytest.raises(OutputError, match="already holds files that no run wrote"):
        wh.run(config, on_stage=lambda stage, what: stages.append((stage, what)))
    assert stages == []  # refused before any stage ran
    config.write_text("[images\n")
    with pytest.raises(InputError, match=r"run.toml.*line 1"):
        wh.run(config)


def test_embed_stores_every_text_layer(warehouse: Warehouse, tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2Model, GPT2TokenizerFast

    folder = tmp_path / "tiny-gpt2"
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["concept n0200 a photo of"] * 5, vocab_size=280,
                            special_tokens=["<|endoftext|>"], show_progress=False)  # fmt: skip
    tokenizer = GPT2TokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=32, n_embd=16, n_layer=2, n_head=2)
    GPT2Model(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    wh = api(warehouse)
    summary = wh.embed(f"hf:{folder}", name="gpt", pooling="last", template=["lemma", "photo"])
    assert summary.spaces == ["gpt/embeddings", "gpt/layer.1", "gpt/layer.2"]
    assert len(summary.templates) == 2 and "photo" in summary.templates[1]
    assert summary.dim == 16
    stored = wh.spaces(kind="text-layer").df()
    assert list(stored["name"]) == summary.spaces
    assert set(stored["n_concepts"]) == {summary.n_concepts} and summary.n_concepts >= 8
    assert (
        wh.embed(f"hf:{folder}", name="gpt", pooling="last", template=["lemma", "photo"]).status
        == "unchanged"
    )
