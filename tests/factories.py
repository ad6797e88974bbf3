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
