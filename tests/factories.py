"""What the tests build by hand: registry rows (one factory a kind of row, each value
overridable) and the fixtures of a module whose tests share one built warehouse.

Each row factory fills the columns a test does not care about with fixed values and takes any
column as a keyword; the row-adding ones add the row to the caller's session and flush it, so
that its ID can be read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import AnalysisRun, Concept, Image, Sweep, SweepMember
from tests.conftest import copy_warehouse, migrated_warehouse


def image_row(concept: str, index: int, **values: Any) -> Image:
    """The ``index``-th image of ``concept`` (its SHA-256 is ``index`` in hex; its stimulus
    id ``<concept>_<index>``), 8 x 8 RGB unless given."""
    return Image(
        **{
            "concept": concept,
            "stimulus": f"{concept}_{index}",
            "path": f"img/{index}.jpg",
            "sha256": f"{index:064x}",
            "width": 8,
            "height": 8,
            "mode": "RGB",
            **values,
        }
    )


def add_image_files(session: Session, files: Sequence[Path]) -> None:
    """Register photos named ``<wnid>_<id>_<label>.jpg``, read in place: their concepts (in
    order of first appearance) and their images (real size, mode and SHA-256)."""
    labels: dict[str, str] = {}
    for path in files:
        wnid, _, label = path.stem.split("_", 2)
        labels.setdefault(wnid, label)
    for wnid, label in labels.items():
        session.add(Concept(concept=wnid, wnid=wnid, name=label, origin="images"))
    session.flush()
    for path in files:
        with PILImage.open(path) as img:
            (width, height), mode = img.size, img.mode
        session.add(
            Image(
                concept=path.stem.split("_", 1)[0],
                stimulus=path.stem,
                path=str(path),
                sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                width=width,
                height=height,
                mode=mode,
            )
        )


def add_analysis_run(session: Session, **values: Any) -> AnalysisRun:
    """An analysis run (a sweep's, with empty parameters and versions unless given)."""
    run = AnalysisRun(
        **{
            "kind": "sweep",
            "params": "{}",
            "params_sha256": "0" * 64,
            "semwh_version": "0",
            "library_versions": "{}",
            "input_hashes": "{}",
            **values,
        }
    )
    session.add(run)
    session.flush()
    return run


def comparison(analysis_id: int, **values: Any) -> dict[str, Any]:
    """The columns every comparison result (``ResultRSA``, ``Result2v2``) shares."""
    return {
        "analysis_id": analysis_id,
        "space_a": "resnet50/layer1.0",
        "space_b": "glove",
        "n_concepts": 10,
        "concepts_sha256": "1" * 64,
        "similarity": "pearson",
        "n_permutations": 100,
        "seed": 7,
        **values,
    }


def add_sweep(
    session: Session, members: Sequence[tuple[str, int, float | None]] = (), **values: Any
) -> Sweep:
    """A finished sweep over no models unless given, with its ``(test, result_id, p_fdr)``
    members."""
    sweep = Sweep(
        **{
            "models": "[]",
            "word_spaces": "[]",
            "tests": "[]",
            "n_permutations": 100,
            "n_tests": len(members),
            "status": "complete",
            "params": "{}",
            **values,
        }
    )
    session.add(sweep)
    session.flush()
    for test, result_id, p_fdr in members:
        session.add(
            SweepMember(sweep_id=sweep.sweep_id, test=test, result_id=result_id, p_fdr=p_fdr)
        )
    return sweep


def warehouse_fixtures(build: Callable[[Warehouse], Any], world: str = "world") -> tuple[Any, ...]:
    """The fixtures of a module whose tests share one built warehouse: ``template`` (one
    migrated warehouse with ``build``'s rows, made once per module: its folder and what
    ``build`` returned), ``warehouse`` (a private copy of it for each test) and ``world`` (named
    by ``world``: what ``build`` returned)."""

    @pytest.fixture(scope="module", name="template")
    def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
        root = tmp_path_factory.mktemp("template") / "wh"
        return root, build(migrated_warehouse(root))

    @pytest.fixture(name="warehouse")
    def warehouse(template: tuple[Path, Any], tmp_path: Path) -> Warehouse:
        return copy_warehouse(template[0], tmp_path / "wh")

    @pytest.fixture(name=world)
    def built(template: tuple[Path, Any]) -> Any:
        return template[1]

    return template, warehouse, built


def noisy_rdms(words: np.ndarray, n_subjects: int, seed: int, noise: float = 1.0) -> np.ndarray:
    """Each subject's Euclidean dissimilarities of the word vectors plus their own noise."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_subjects):
        x = words + noise * rng.standard_normal(words.shape)
        out.append(np.linalg.norm(x[:, None] - x[None], axis=2))
    return np.stack(out)


def add_subject_rdms(wh: Warehouse, folder: Path, space: str, n_subjects: int, seed: int) -> None:
    """Ingest ``subjects``: ``n_subjects`` noisy RDMs of the word space ``space`` (files written
    into ``folder``)."""
    from semwh.ingest import ingest_rdm
    from semwh.vectors import load_space

    words = load_space(wh, space)
    np.save(folder / "rdms.npy", noisy_rdms(words.matrix, n_subjects, seed))
    (folder / "keys.txt").write_text("\n".join(words.concept_ids) + "\n")
    ingest_rdm(wh, "subjects", folder / "rdms.npy", keys=folder / "keys.txt")


def add_stimuli(wh: Warehouse, concepts: Sequence[str], prefix: str = "") -> list[tuple[int, str]]:
    """Register one image per entry of ``concepts`` (the concepts too, where new): its
    ``(image_id, stimulus)``, stimulus ``<prefix><concept>_<k>`` for its concept's k-th image."""
    out: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    with wh.session() as session:
        known = set(session.scalars(select(Concept.concept)).all())
        start = session.scalar(select(func.count()).select_from(Image)) or 0
        for concept in dict.fromkeys(concepts):
            if concept not in known:
                session.add(Concept(concept=concept, name=concept, origin="file"))
        session.flush()
        for i, concept in enumerate(concepts):
            k = seen[concept] = seen.get(concept, 0) + 1
            row = image_row(concept, start + i + 1, stimulus=f"{prefix}{concept}_{k}")
            session.add(row)
            session.flush()
            out.append((row.image_id, row.stimulus))
    return out


def add_image_layer(
    wh: Warehouse,
    model: str,
    layer: str,
    images: Sequence[tuple[int, str]],
    concepts: Sequence[str],
    vectors: np.ndarray,
    depth_index: int = 0,
) -> str:
    """A vision model's layer holding ``vectors`` (one row per image of ``images``, whose
    concepts are ``concepts``) as an extraction stores it: one per-image vector file and the
    concept means as its space. Returns the space's name ``MODEL/LAYER``."""
    from semwh.vectors.store import (
        image_shard_relpath,
        register_vector_file,
        save_space,
        write_vector_file,
    )
    from semwh.warehouse.models import ExtractionRun, Layer, VisionModel

    vectors = np.asarray(vectors, dtype=np.float32)
    name = f"{model}/{layer}"
    with wh.session() as session:
        vm = session.scalar(select(VisionModel).where(VisionModel.name == model))
        if vm is None:
            vm = VisionModel(name=model, architecture="test", weights="none", preprocessing="{}")
            session.add(vm)
            session.flush()
        row = Layer(
            model_id=vm.model_id, module=layer, depth_index=depth_index,
            relative_depth=float(depth_index), output_shape=f"[{vectors.shape[1]}]",
            pooling="none", dim=vectors.shape[1], layout="vector",
        )  # fmt: skip
        run = ExtractionRun(
            model_id=vm.model_id, params_sha256=f"{model}/{layer}", params="{}",
            n_images=len(images), n_shards=1, status="done",
        )  # fmt: skip
        session.add_all([row, run])
        session.flush()
        layer_id, run_id = row.layer_id, run.run_id
    info = write_vector_file(
        wh, image_shard_relpath(model, layer, run_id, 0), name, list(concepts), vectors,
        image_ids=[i for i, _ in images],
    )  # fmt: skip
    with wh.session() as session:
        register_vector_file(
            session, info, "images", layer_id=layer_id, run_id=run_id, shard_index=0
        )
    keys = sorted(set(concepts))
    means = np.stack([vectors[[c == k for c in concepts]].mean(axis=0) for k in keys])
    save_space(
        wh, name, "layer", keys, means, model=model, layer=layer, layer_id=layer_id,
        depth_index=depth_index, relative_depth=float(depth_index),
    )  # fmt: skip
    return name
