"""Registry rows of an extraction job: the image set, the model, its layers and the run.

A run is found again by the hash of its parameters (``extraction_runs.params_sha256``); the
shards it has already registered are the ones a resumed job skips. Every registry call here
waits and retries while another process holds the DuckDB file.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select

from semwh import __version__
from semwh.errors import ConfigError, DuplicateError, WarehouseBusyError
from semwh.extract.hooks import Pooling
from semwh.extract.models import LoadedModel
from semwh.extract.plan import LayerPlan
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import ExtractionRun, ExtractionShard, Image, Layer, VisionModel

BUSY_RETRY_SECONDS = 120.0


def with_busy_retry(fn: Callable[[], Any], timeout: float = BUSY_RETRY_SECONDS) -> Any:
    """Call ``fn``; while another process holds the registry, wait and try again."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            return fn()
        except WarehouseBusyError:
            if time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def extraction_versions() -> dict[str, str]:
    """Versions of semwh and the libraries that shape extracted vectors."""
    import torch
    import torchvision

    return {
        "semwh": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }


@dataclass(frozen=True)
class ImageRow:
    """One registered image as the shard runners see it (path as stored in the registry)."""

    image_id: int
    wnid: str
    path: str


def image_set(wh: Warehouse) -> tuple[list[ImageRow], str]:
    """The registered images ordered by image_id, and a hash of their ids and contents."""

    def read() -> tuple[list[ImageRow], str]:
        with wh.session() as session:
            rows = session.execute(
                select(Image.image_id, Image.wnid, Image.path, Image.sha256).order_by(
                    Image.image_id
                )
            ).all()
        digest = hashlib.sha256()
        for row in rows:
            digest.update(f"{row.image_id}:{row.sha256}\n".encode())
        return [ImageRow(r.image_id, r.wnid, r.path) for r in rows], digest.hexdigest()

    return with_busy_retry(read)


def run_params(
    loaded: LoadedModel,
    layers: list[str],
    pooling: Pooling,
    precision: str,
    shard_size: int,
    images_sha256: str,
    n_images: int,
) -> dict[str, Any]:
    """The parameters that identify a run (hashed into ``params_sha256``)."""
    return {
        "model": loaded.name,
        "architecture": loaded.architecture,
        "weights": loaded.weights,
        "weights_sha256": loaded.weights_sha256,
        "seed": loaded.seed,
        "layers": layers,
        "pooling": pooling.to_dict(),
        "preprocessing": loaded.preprocessing.to_dict(),
        "precision": precision,
        "shard_size": shard_size,
        "images_sha256": images_sha256,
        "n_images": n_images,
    }


def ensure_model(wh: Warehouse, loaded: LoadedModel) -> int:
    """The model's registry id (created, or reused when its weights hash matches)."""

    def work() -> int:
        with wh.session() as session:
            row = session.scalar(select(VisionModel).where(VisionModel.name == loaded.name))
            if row is None:
                row = VisionModel(
                    name=loaded.name,
                    architecture=loaded.architecture,
                    weights=loaded.weights,
                    weights_sha256=loaded.weights_sha256,
                    seed=loaded.seed,
                    preprocessing=loaded.preprocessing.to_json(),
                    n_parameters=loaded.n_parameters,
                )
                session.add(row)
                session.flush()
            elif row.weights_sha256 != loaded.weights_sha256:
                raise DuplicateError(
                    f"model {loaded.name!r} is registered with other weights "
                    f"({row.weights}, sha256 {str(row.weights_sha256)[:12]}...) than "
                    f"{loaded.weights} (sha256 {loaded.weights_sha256[:12]}...): pass --name "
                    "to store these weights as another model"
                )
            return row.model_id

    try:
        return with_busy_retry(work)
    except DuplicateError:
        # Another process of the same job registered the model first.
        return with_busy_retry(work)


def ensure_layers(
    wh: Warehouse, model_id: int, model_name: str, plan: list[LayerPlan]
) -> dict[str, tuple[int, int, float]]:
    """Layer rows of the plan (created, or reused when identical).

    Returns:
        module -> (layer_id, depth_index, relative_depth) as registered.
    """
    n = len(plan)

    def work() -> dict[str, tuple[int, int, float]]:
        with wh.session() as session:
            existing = {
                row.module: row
                for row in session.scalars(select(Layer).where(Layer.model_id == model_id))
            }
            ids: dict[str, tuple[int, int, float]] = {}
            new = [p for p in plan if p.module not in existing]
            if new and existing:
                raise ConfigError(
                    f"model {model_name!r} already has probe layers "
                    f"{', '.join(sorted(existing, key=lambda m: existing[m].depth_index))}; "
                    f"{', '.join(p.module for p in new)} would change their depth order: probe a "
                    "subset of them, or pass --name to store this layer set as another model"
                )
            for p in plan:
                row = existing.get(p.module)
                if row is None:
                    row = Layer(
                        model_id=model_id,
                        module=p.module,
                        depth_index=p.depth_index,
                        relative_depth=p.depth_index / (n - 1) if n > 1 else 0.0,
                        output_shape=json.dumps(list(p.output_shape)),
                        pooling=p.pooling,
                        dim=p.dim,
                    )
                    session.add(row)
                    session.flush()
                elif row.pooling != p.pooling or row.dim != p.dim:
                    raise ConfigError(
                        f"layer {model_name}/{p.module} is stored with pooling {row.pooling} "
                        f"(dim {row.dim}), not {p.pooling} (dim {p.dim}): pass --name to store "
                        "this pooling as another model"
                    )
                ids[p.module] = (row.layer_id, row.depth_index, row.relative_depth)
            return ids

    try:
        return with_busy_retry(work)
    except DuplicateError:
        return with_busy_retry(work)


def ensure_run(
    wh: Warehouse, model_id: int, params: dict[str, Any], n_images: int, n_shards: int, device: str
) -> tuple[int, str, set[int]]:
    """The run of these parameters (created or found again).

    Returns:
        (run_id, status, indices of the shards already registered).
    """
    text = json.dumps(params, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()

    def work() -> tuple[int, str, set[int]]:
        with wh.session() as session:
            run = session.scalar(select(ExtractionRun).where(ExtractionRun.params_sha256 == digest))
            if run is None:
                run = ExtractionRun(
                    model_id=model_id,
                    params_sha256=digest,
                    params=text,
                    n_images=n_images,
                    n_shards=n_shards,
                    status="running",
                    device=device,
                    versions=json.dumps(extraction_versions(), sort_keys=True),
                )
                session.add(run)
                session.flush()
            done = set(
                session.scalars(
                    select(ExtractionShard.shard_index).where(ExtractionShard.run_id == run.run_id)
                )
            )
            return run.run_id, run.status, done

    try:
        return with_busy_retry(work)
    except DuplicateError:
        return with_busy_retry(work)
