"""Finishing an extraction run: concept means of each layer, computed from its shard files.

The means are stored as ``MODEL/LAYER`` spaces, the run is marked done, and per-image files of
older runs of the same layers leave the registry and the disk.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import partial

import numpy as np
from sqlalchemy import delete, select

from semwh.extract.networks import LoadedModel
from semwh.extract.plan import ExtractionPlan
from semwh.extract.rows import extraction_versions, with_busy_retry
from semwh.vectors import save_space
from semwh.vectors.store import concept_means, read_checked
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import ExtractionRun, VectorFile


def finalize_run(
    wh: Warehouse,
    loaded: LoadedModel,
    run_id: int,
    plan: ExtractionPlan,
    layers: dict[str, tuple[int, int, float]],
    device: str,
    images_per_s: float | None,
) -> list[str]:
    """Concept means per layer as ``MODEL/LAYER`` spaces; mark the run done."""

    def files() -> dict[int, list[VectorFile]]:
        with wh.session() as session:
            rows = session.scalars(
                select(VectorFile)
                .where(VectorFile.run_id == run_id, VectorFile.kind == "images")
                .order_by(VectorFile.shard_index)
            ).all()
        out: dict[int, list[VectorFile]] = {}
        for row in rows:
            out.setdefault(int(row.layer_id or 0), []).append(row)
        return out

    by_layer = with_busy_retry(files)
    layer_ids = {module: ids[0] for module, ids in layers.items()}
    spaces = []
    for layer_plan in plan.layers:
        layer_id, depth_index, relative_depth = layers[layer_plan.module]
        name = f"{loaded.name}/{layer_plan.module}"
        concept_ids, matrix = read_layer(wh, by_layer.get(layer_id, []), name)
        concepts, means = concept_means(concept_ids, matrix)
        with_busy_retry(
            partial(
                save_space,
                wh,
                name,
                "layer",
                concepts,
                means,
                model=loaded.name,
                layer=layer_plan.module,
                layer_id=layer_id,
                depth_index=depth_index,
                relative_depth=relative_depth,
                replace=True,
                metadata={"run_id": run_id, "pooling": layer_plan.pooling},
            )
        )
        spaces.append(name)

    def mark_done() -> list[str]:
        with wh.session() as session:
            run = session.get(ExtractionRun, run_id)
            assert run is not None
            run.status = "done"
            run.finished_at = datetime.utcnow()
            run.device = device
            if images_per_s is not None:
                run.images_per_s = images_per_s
            run.versions = json.dumps(extraction_versions(), sort_keys=True)
            # An older run of these layers (another image set or precision) is superseded: its
            # per-image files leave the registry so each layer reads one consistent run.
            old = session.scalars(
                select(VectorFile.path).where(
                    VectorFile.kind == "images",
                    VectorFile.layer_id.in_(list(layer_ids.values())),
                    VectorFile.run_id != run_id,
                )
            ).all()
            session.execute(
                delete(VectorFile).where(
                    VectorFile.kind == "images",
                    VectorFile.layer_id.in_(list(layer_ids.values())),
                    VectorFile.run_id != run_id,
                )
            )
            return list(old)

    root = wh.vectors
    for rel in with_busy_retry(mark_done):
        root.delete(rel)
    return spaces


def read_layer(wh: Warehouse, files: list[VectorFile], space: str) -> tuple[list[str], np.ndarray]:
    """The concept_ids and vectors of a layer's per-image shard files, each checked against its
    record before its numbers are used (:func:`semwh.vectors.store.read_checked`)."""
    concept_ids: list[str] = []
    parts: list[np.ndarray] = []
    for file in files:
        table = read_checked(wh, file, space, columns=["concept", "vector"])
        concept_ids.extend(table.column("concept").to_pylist())
        column = table.column("vector").combine_chunks()
        parts.append(column.flatten().to_numpy().reshape(table.num_rows, -1))
    matrix = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    return concept_ids, matrix
