"""A lab's own stimuli through one run file: a THINGS-style set (concept ids such as
``bean_bag``, one with a WordNet id, images in ``DIR/<concept>/*.jpg``), a concept file, word
vectors, an external space and subjects' RDMs, swept against a small random-weights network by
the pipeline of `semwh run`; the ids round-trip exactly and the declared space and RDM are
targets of the run's sweep and of a peak test."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from semwh.config import load_settings
from semwh.errors import DuplicateError
from semwh.warehouse.layout import Warehouse, warehouse_from_settings
from semwh.warehouse.models import Concept, Image, Space, Sweep
from semwh.warehouse.readonly import run_sql
from semwh.workflow.pipeline import run_pipeline
from semwh.workflow.runfile import ImagesConfig, load_config
from semwh.workflow.stages import (
    concepts_stage,
    images_stage,
    rdm_stage,
    select_images,
    space_stage,
)

pytestmark = pytest.mark.integration

# id, name, wnid (goldfish keeps WordNet's; the others have none, as 58 THINGS concepts).
CONCEPTS = [
    ("aardvark", "aardvark", ""),
    ("bean_bag", "bean bag", ""),
    ("bike_helmet", "bike helmet", ""),
    ("goldfish", "goldfish", "n01443537"),
    ("ice_cream", "ice cream", ""),
]
IDS = [c[0] for c in CONCEPTS]
PER_CONCEPT = 3  # on disk; the run file takes the first 2 of each
MODEL = "tiny_net"

RUN = """
[concepts]
file = "meta/concepts.csv"
name_column = "Word"

[images]
folder = "object_images"
layout = "folder"
per_concept = 2

[[words]]
name = "glove"
file = "vectors/glove.txt"
format = "glove"

[[spaces]]
name = "ratings"
file = "meta/ratings.csv"

[[rdms]]
name = "behaviour"
file = "meta/rdms.csv"

[[models]]
name = "module:tests.integration.vision_modules:tiny_net"
preprocessing = "imagenet,resize=40,crop=32"
layers = "stem,head"

[[peaks]]
model = "tiny_net"
target = "behaviour"
permutations = 10
bootstrap = 10

[analysis]
tests = ["2v2", "rsa"]
recovery = false
permutations = 20
seed = 3

[report]
enabled = false
"""


def things_study(root: Path, samples_dir: Path) -> Path:
    """The study folder: copied photos under new names, a concept file, words, a space, RDMs."""
    photos = sorted(samples_dir.glob("*.jpg"))[: len(IDS) * PER_CONCEPT]
    for i, photo in enumerate(photos):
        concept = IDS[i // PER_CONCEPT]
        folder = root / "object_images" / concept
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo, folder / f"{concept}_{i % PER_CONCEPT + 1:02d}b.jpg")
    meta = root / "meta"
    meta.mkdir()
    (meta / "concepts.csv").write_text(
        "concept,Word,wnid,category\n"
        + "".join(f"{c},{name},{wnid},thing\n" for c, name, wnid in CONCEPTS)
    )
    rng = np.random.default_rng(5)
    words = ["aardvark", "bean", "bag", "bike", "helmet", "goldfish", "ice", "cream", "other"]
    (root / "vectors").mkdir()
    (root / "vectors" / "glove.txt").write_text(
        "".join(f"{w} {' '.join(f'{v:.5f}' for v in rng.normal(size=8))}\n" for w in words)
    )
    # The space names its concepts by their names, the RDMs by their ids.
    (meta / "ratings.csv").write_text(
        "concept,size,animacy,price\n"
        + "".join(f"{name},{rng.normal():.4f},{rng.normal():.4f},{rng.normal():.4f}\n"
                  for _, name, _ in CONCEPTS)
    )  # fmt: skip
    lines = ["concept,subject," + ",".join(IDS)]
    for subject in ("s01", "s02"):
        points = rng.normal(size=(len(IDS), 3))
        dist = np.linalg.norm(points[:, None] - points[None], axis=-1)
        lines += [f"{c},{subject}," + ",".join(f"{d:.5f}" for d in row)
                  for c, row in zip(IDS, dist, strict=True)]  # fmt: skip
    (meta / "rdms.csv").write_text("\n".join(lines) + "\n")
    (root / "run.toml").write_text(RUN)
    return root / "run.toml"


def test_the_subset_reads_any_layout(tmp_path: Path, samples_dir: Path) -> None:
    run = things_study(tmp_path, samples_dir)
    images = tmp_path / "object_images"
    chosen = select_images(ImagesConfig(folder=images, max_concepts=2, per_concept=2))
    assert [(e.concept_key, e.stimulus) for e in chosen] == [
        ("aardvark", "aardvark_01b"), ("aardvark", "aardvark_02b"),
        ("bean_bag", "bean_bag_01b"), ("bean_bag", "bean_bag_02b"),
    ]  # fmt: skip
    # A manifest's own stimulus ids and concepts, cut alike.
    manifest = tmp_path / "images.csv"
    manifest.write_text(
        "path,concept,stimulus\n"
        + "".join(
            f"{p.relative_to(tmp_path)},{p.parent.name},s{i}\n"
            for i, p in enumerate(sorted(images.glob("*/*.jpg")))
        )
    )
    chosen = select_images(ImagesConfig(manifest=manifest, per_concept=1))
    assert [(e.concept_key, e.stimulus) for e in chosen] == [
        (c, f"s{i * PER_CONCEPT}") for i, c in enumerate(IDS)
    ]
    # The prefix layout: the known ids decide where bean_bag_01b's concept ends.
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in images.glob("*/*.jpg"):
        shutil.copyfile(p, flat / p.name)
    chosen = select_images(ImagesConfig(folder=flat, per_concept=1), known_concepts=set(IDS))
    assert [e.concept_key for e in chosen] == IDS
    assert load_config(run).images.folder == images.resolve()


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, samples_dir: Path) -> tuple[Warehouse, Path]:
    root = tmp_path_factory.mktemp("things")
    run = things_study(root / "study", samples_dir)
    # What `semwh run` calls (in this process: the model is a module of the tests).
    wh = warehouse_from_settings(load_settings(root / "wh"))
    summary = run_pipeline(wh, load_config(run))
    assert {s.status for s in summary.stages} == {"done"}, summary.stages
    return wh, run


def test_run_file_brings_in_a_labs_own_stimuli(study: tuple[Warehouse, Path]) -> None:
    wh, _ = study
    with wh.session() as session:
        concepts = {c.concept: c for c in session.scalars(select(Concept))}
        images = session.execute(select(Image.concept, Image.stimulus)).tuples().all()
        spaces = dict(session.execute(select(Space.name, Space.kind)).tuples().all())
        sweeps = session.scalars(select(Sweep).order_by(Sweep.sweep_id)).all()
    # Ids exactly as the concept file gives them; names from its Word column.
    assert sorted(concepts) == IDS
    assert concepts["bean_bag"].name == "bean bag" and concepts["goldfish"].wnid == "n01443537"
    # The folder layout, cut to 2 images a concept; stimulus ids are the files' stems.
    assert sorted(images) == [(c, f"{c}_{k:02d}b") for c in IDS for k in (1, 2)]
    assert spaces["ratings"] == "external" and spaces["behaviour"] == "rdm"
    # The word space in one sweep; the declared space and RDM in a sweep of their own; the
    # peak test against the RDM is a third.
    assert [(json.loads(s.models), json.loads(s.word_spaces)) for s in sweeps] == [
        ([MODEL], ["glove"]), ([MODEL], ["ratings", "behaviour"]), ([MODEL], ["behaviour"])
    ]  # fmt: skip
    swept = run_sql(
        wh, "SELECT sweep_id, space_a, space_b, test FROM sweep_results WHERE sweep_id < 3"
    ).rows()
    layers = [f"{MODEL}/stem", f"{MODEL}/head"]
    assert sorted(swept) == sorted(
        (sweep_id, layer, target, test)
        for sweep_id, targets in ((1, ["glove"]), (2, ["ratings", "behaviour"]))
        for layer in layers
        for target in targets
        for test in ("2v2", "rsa")
    )
    peaks = run_sql(wh, "SELECT DISTINCT space_b FROM grid_results").rows()
    assert peaks == [("behaviour",)]


def test_second_run_of_the_declared_inputs_changes_nothing(
    study: tuple[Warehouse, Path],
) -> None:
    wh, run = study
    config = load_config(run)
    assert config.concepts is not None
    again = [
        concepts_stage(wh, config.concepts),
        images_stage(wh, config.images, None),
        *(space_stage(wh, space) for space in config.spaces),
        *(rdm_stage(wh, rdm) for rdm in config.rdms),
    ]
    assert [o.status for o in again] == ["unchanged"] * 4, again
    assert again[1].detail == "0 added, 10 present, 5 concepts (folder)"
    # A changed RDM file is a new version only when its entry says replace = true.
    changed = run.parent / "meta" / "rdms-v2.csv"
    header, *rows = (run.parent / "meta" / "rdms.csv").read_text().splitlines()
    doubled = [
        ",".join(r.split(",")[:2] + [str(2 * float(v)) for v in r.split(",")[2:]]) for r in rows
    ]
    changed.write_text("\n".join([header, *doubled]) + "\n")
    rdm = replace(config.rdms[0], file=changed)
    with pytest.raises(DuplicateError, match=r"run.toml: \[\[rdms\]\] behaviour: .*set replace = "):
        rdm_stage(wh, rdm, str(run))
    assert rdm_stage(wh, replace(rdm, replace=True), str(run)).status == "done"
