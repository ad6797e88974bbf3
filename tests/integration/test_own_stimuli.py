"""A lab's own stimulus set, end to end: THINGS-style concept ids (with and without WordNet
ids, multi-word, accented), the folder layout, a manifest with stimulus ids, extraction,
a sweep against GloVe and an RDM target keyed partly by names, the report, and every id
read back exactly as given - without WordNet, and (ingest) with WordNet installed."""

from __future__ import annotations

import csv
import shutil
import unicodedata
from pathlib import Path

import pytest

import semwh
from semwh.api import SemanticWarehouse
from semwh.errors import InputError
from semwh.ingest.wordnet import open_wordnet
from tests.conftest import run_cli

pytestmark = [pytest.mark.integration]

# id, name, wnid, category: WordNet ids only where THINGS has one that WordNet 3.0 holds.
CONCEPTS = [
    ("aardvark", "aardvark", "", "animal"),
    ("bean_bag", "bean bag", "", "furniture"),
    ("ice_cream", "ice cream", "", "food"),
    ("bike_helmet", "bike helmet", "", "clothing"),
    ("crème_brûlée", "crème brûlée", "", "food"),
    ("dog", "dog", "n02084071", "animal"),
    ("cat", "cat", "n02121808", "animal"),
    ("apple", "apple", "n07739125", "food"),
]
IDS = [row[0] for row in CONCEPTS]
PER_CONCEPT = 2


def _things_set(root: Path, samples: Path) -> tuple[Path, Path, Path]:
    """object_images/<concept>/<concept>_NNx.jpg from the sample photos (one folder named in
    NFD, as macOS writes it), a concepts file, and a manifest of two more photos with
    stimulus ids."""
    photos = sorted(samples.glob("*.jpg"))
    folder = root / "object_images"
    k = 0
    for concept in IDS:
        sub = folder / unicodedata.normalize("NFD", concept)
        sub.mkdir(parents=True)
        for j in range(PER_CONCEPT):
            shutil.copyfile(photos[k * 7], sub / f"{concept}_{j + 1:02d}b.jpg")
            k += 1
    concepts = root / "things_concepts.csv"
    with concepts.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["uniqueID", "Word", "wordnet", "category"])
        writer.writerows(CONCEPTS)
    extra = root / "extra"
    extra.mkdir()
    manifest = root / "extra.csv"
    with manifest.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "concept", "stimulus"])
        for j, (_, key) in enumerate([("aardvark", "aardvark"), ("bean_bag", "bean bag")]):
            target = extra / f"photo{j}.jpg"
            shutil.copyfile(photos[500 + j], target)
            writer.writerow([f"extra/{target.name}", key, f"stim-{j:03d}"])
    return folder, concepts, manifest


def _rdm(path: Path) -> Path:
    """Two subjects' dissimilarities; rows and columns keyed by ids, two by display names."""
    keys = [("ice cream" if c == "ice_cream" else "bike helmet" if c == "bike_helmet" else c)
            for c in IDS]  # fmt: skip
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["concept", "subject", *keys])
        for subject in ("s1", "s2"):
            for i, key in enumerate(keys):
                row = [abs(i - j) + (0.5 if subject == "s2" else 0.0) * (i != j)
                       for j in range(len(keys))]  # fmt: skip
                writer.writerow([key, subject, *row])
    return path


def _ingest(tmp_path: Path, samples: Path, wordnet: str) -> SemanticWarehouse:
    """The set ingested (concepts through the CLI, images through the API), its ids
    checked as stored."""
    folder, concepts, manifest = _things_set(tmp_path, samples)
    root = tmp_path / "wh"
    wh = semwh.open(root, create=True)
    wn = ["--no-wordnet"] if wordnet == "none" else []
    out = run_cli(
        "-w", str(root), "ingest", "concepts", str(concepts),
        "--id-column", "uniqueID", "--name-column", "Word", "--wnid-column", "wordnet", *wn,
    ).stdout  # fmt: skip
    assert f"{len(IDS)} added" in out
    report = wh.ingest_images(folder, wordnet=False if wordnet == "none" else None)
    assert (report.layout, report.added, report.new_concepts) == ("folder", 16, [])
    report = wh.ingest_images(manifest=manifest, wordnet=False if wordnet == "none" else None)
    assert (report.added, report.new_concepts) == (2, [])

    rows = wh.sql("SELECT concept, name, wnid, attributes, lemmas FROM concepts").rows()
    stored = {r[0]: r for r in rows}
    assert sorted(stored) == sorted(IDS)
    for concept, name, wnid, category in CONCEPTS:
        assert stored[concept][1:3] == (name, wnid or None)
        assert f'"category": "{category}"' in stored[concept][3]
        # WordNet enriches the concepts that have a WordNet id, when it is installed.
        enriched = wordnet == "installed" and bool(wnid)
        assert (stored[concept][4] is not None) == enriched, concept
    images = wh.sql("SELECT stimulus, concept FROM images ORDER BY stimulus").rows()
    assert ("stim-000", "aardvark") in images and ("stim-001", "bean_bag") in images
    assert ("crème_brûlée_01b", "crème_brûlée") in images
    assert len({s for s, _ in images}) == len(images) == 18
    return wh


def test_ids_round_trip_with_wordnet_installed(tmp_path: Path, samples_dir: Path) -> None:
    if open_wordnet(None)[0] is None:
        pytest.skip("WordNet 3.0 is not installed here (Debian wordnet-base)")
    wh = _ingest(tmp_path, samples_dir, "installed")
    # A second ingest of the same files changes nothing and keeps every id.
    again = wh.ingest_images(tmp_path / "object_images")
    assert (again.added, again.already_present, again.new_concepts) == (0, 16, [])
    lemmas = wh.sql("SELECT lemmas FROM concepts WHERE concept = 'dog'").rows()
    assert "domestic_dog" in lemmas[0][0]
    # THINGS gives synset names (fish.n.01): WordNet reads them as the synset's id.
    synsets = tmp_path / "synsets.tsv"
    synsets.write_text("concept\twnid\nfish\tfish.n.01\n")
    wh.ingest_concepts(synsets)
    rows = wh.sql("SELECT wnid, lexname FROM concepts WHERE concept = 'fish'").rows()
    assert [tuple(r) for r in rows] == [("n02512053", "noun.animal")]


def test_a_things_style_set_runs_end_to_end(tmp_path: Path, samples_dir: Path) -> None:
    wh = _ingest(tmp_path, samples_dir, "none")
    wh.extract("efficientnet_lite0", weights="none", layers="stem,head", device="cpu")
    words = wh.ingest_words("glove", "package")
    assert sorted(words.missing) == sorted(
        (c, n) for c, n, *_ in CONCEPTS if c not in {r[0] for r in wh.sql(
            "SELECT concept FROM word_tokens WHERE tokens IS NOT NULL").rows()}
    )  # fmt: skip
    wh.ingest_rdm("behaviour", _rdm(tmp_path / "rdm.csv"))
    layer = wh.sql(
        "SELECT DISTINCT concept FROM vectors WHERE space = 'efficientnet_lite0-random/head'"
    ).rows()
    assert sorted(r[0] for r in layer) == sorted(IDS)
    rdm = wh.sql("SELECT concept FROM vectors WHERE space = 'behaviour'").rows()
    assert sorted(r[0] for r in rdm) == sorted(IDS)

    result = wh.sweep(["efficientnet_lite0-random"], ["glove", "behaviour"], permutations=20)
    assert {r.space_b for r in result.rows} == {"glove", "behaviour"}
    assert all(r.n_concepts == len(IDS) for r in result.rows if r.space_b == "behaviour")
    curves = wh.curves().rows()
    assert curves, "layer curves of the sweep"
    wh.report(tmp_path / "report", heatmap="efficientnet_lite0-random/head")
    html = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert "behaviour" in html and "glove" in html

    # Per-image lab data joins on the stimulus id, per-concept data on the concept id.
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("stimulus,memorability\nstim-000,0.7\ncrème_brûlée_02b,0.4\n")
    joined = wh.query("external_join_images_csv", path=str(ratings), allow_read=[tmp_path])
    rows = joined.table.to_pylist()
    assert [(r["stimulus"], r["concept"]) for r in rows] == [
        ("crème_brûlée_02b", "crème_brûlée"),
        ("stim-000", "aardvark"),
    ]
    # Top-1 accuracy does not apply to concepts that are not classes of the model.
    assert all(r["top1_correct"] is None and r["top1_note"] for r in rows)
    assert [r["memorability"] for r in rows] == [0.4, 0.7]


def test_unknown_keys_name_their_nearest_ids(tmp_path: Path) -> None:
    concepts = tmp_path / "c.csv"
    concepts.write_text("concept\naardvark\nbean_bag\nice_cream\nbike_helmet\n")
    wh = semwh.open(tmp_path / "wh", create=True)
    wh.ingest_concepts(concepts, no_wordnet=True)
    space = tmp_path / "s.csv"
    space.write_text("concept,x,y\naardvark,1,2\nbeanbag,3,4\nice cream,5,6\nbike_helmet,7,8\n")
    with pytest.raises(InputError, match=r"beanbag.*line 3.*nearest: 'bean_bag'"):
        wh.ingest_space("ratings", space)
    synsets = tmp_path / "synsets.csv"
    synsets.write_text("concept,wnid\nfish,fish.n.01\n")
    with pytest.raises(InputError, match=r"synsets.csv line 2: concept 'fish'.*needs WordNet"):
        wh.ingest_concepts(synsets, no_wordnet=True)
    bad = tmp_path / "bad.csv"
    bad.write_text("concept\nok\nbad/id\n")
    with pytest.raises(InputError, match=r"line 3.*'/'"):
        wh.ingest_concepts(bad, no_wordnet=True)
