"""Registry rows of an extraction job: the image set, the model, its layers and the run.

A run is found again by the hash of its parameters (``extraction_runs.params_sha256``); the
shards it has already registered are the ones a resumed job skips. Every registry call here
waits and retries while another process holds the DuckDB file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select

from semwh.errors import ConfigError, DuplicateError, WarehouseBusyError
from semwh.extract.hooks import Pooling
from semwh.extract.layouts import Layout, parse_layout
from semwh.extract.networks import LoadedModel
from semwh.extract.plan import LayerPlan
from semwh.extract.spec import ModelIdentity
from semwh.version import __version__
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import ExtractionRun, ExtractionShard, Image, Layer, VisionModel
from semwh.warehouse.writers import is_retryable

log = logging.getLogger("semwh")

BUSY_RETRY_SECONDS = 120.0


def with_busy_retry(fn: Callable[[], Any], timeout: float = BUSY_RETRY_SECONDS) -> Any:
    """Call ``fn``; while another process holds the registry (a DuckDB file), or when the
    server rolled ``fn``'s transaction back for a serialisation failure or a deadlock with
    another writer (PostgreSQL; said in one line), wait and try again."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            return fn()
        except Exception as exc:
            busy = isinstance(exc, WarehouseBusyError)
            if not (busy or is_retryable(exc)) or time.monotonic() > deadline:
                raise
            if not busy:
                log.warning(
                    "registering extracted vectors: another writer's transaction conflicted "
                    "with this one; trying again in %.2f s",
                    delay,
                )
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def extraction_versions() -> dict[str, str]:
    """Versions of semwh and the libraries that shape extracted vectors: torch, numpy, and
    each model source's libraries (torchvision always; timm, transformers, open_clip, an
    outside source's own when this process used them)."""
    import torch

    from semwh.extract.sources import loaded_sources

    versions = {
        "semwh": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }
    for source in loaded_sources():
        versions.update(source.versions())
    return versions


@dataclass(frozen=True)
class ImageRow:
    """One registered image as the shard runners see it (path as stored in the registry)."""

    image_id: int
    concept: str
    path: str
    sha256: str = ""  # checked against the file before extraction


def image_set(wh: Warehouse) -> tuple[list[ImageRow], str]:
    """The registered images ordered by image_id, and a hash of their ids and contents."""

    def read() -> tuple[list[ImageRow], str]:
        with wh.session() as session:
            rows = session.execute(
                select(Image.image_id, Image.concept, Image.path, Image.sha256).order_by(
                    Image.image_id
                )
            ).all()
        digest = hashlib.sha256()
        for row in rows:
            digest.update(f"{row.image_id}:{row.sha256}\n".encode())
        return [ImageRow(r.image_id, r.concept, r.path, r.sha256) for r in rows], digest.hexdigest()

    return with_busy_retry(read)


def run_params(
    model: ModelIdentity,
    layers: list[str] | None,
    pooling: Pooling,
    precision: str,
    shard_size: int,
    images_sha256: str,
    n_images: int,
    layouts: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The parameters that identify a run (hashed into ``params_sha256``).

    ``layers`` None leaves the probe layers out, for :func:`find_finished_run`, which knows
    them only as a set. ``layouts`` (from :func:`layouts_param`) is recorded only when some
    output is pooled otherwise than semwh did before layouts, so older runs keep their
    identity and resume.
    """
    params = {
        "model": model.name,
        "architecture": model.architecture,
        "weights": model.weights,
        "weights_sha256": model.weights_sha256,
        "seed": model.seed,
        "layers": layers,
        "pooling": pooling.to_dict(),
        "preprocessing": model.preprocessing.to_dict(),
        "precision": precision,
        "shard_size": shard_size,
        "images_sha256": images_sha256,
        "n_images": n_images,
    }
    if layers is None:
        del params["layers"]
    if layouts is not None:
        params["layouts"] = layouts
    if model.missing_weights:
        # Recorded only when a checkpoint lacked weights, so other runs keep their identity.
        params["missing_weights"] = list(model.missing_weights)
    return params


def layouts_param(
    layouts: dict[str, Layout], shapes: dict[str, tuple[int, ...]], tokens: str
) -> dict[str, str] | None:
    """The layouts a run records: None when every output is pooled as by rank alone
    (``tokens``: the run's token rule)."""
    if all(layouts[m].is_legacy(shapes[m], tokens) for m in layouts):
        return None
    return {m: str(layouts[m]) for m in sorted(layouts)}


def params_digest(params: dict[str, Any]) -> tuple[str, str]:
    """The stored text of a run's parameters and its ``params_sha256``."""
    text = json.dumps(params, sort_keys=True)
    return text, hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class FinishedRun:
    """A completed run found from its parameters alone (see :func:`find_finished_run`).

    Attributes:
        run_id: The run.
        layers: Its probe layers, forward order.
        shapes: Output shape of each probe layer (batch excluded), as registered.
        n_parameters: The model's parameter count, as registered.
        layouts: Layout of each probe layer's output, as registered.
    """

    run_id: int
    layers: list[str]
    shapes: dict[str, tuple[int, ...]]
    n_parameters: int
    layouts: dict[str, Layout]


def find_finished_run(
    wh: Warehouse, params: dict[str, Any], layers: list[str]
) -> FinishedRun | None:
    """The completed run of ``params`` whose probe layers are ``layers`` in any order.

    ``params`` are a run's parameters (:func:`run_params`) without ``layers``: the forward
    order of the probe layers is known only from a forward pass. The run's registered order
    is that pass's order, so a completed run with the same parameters and the same set of
    layers is the run a forward pass would identify; it is accepted only if its recorded
    parameters hash to its ``params_sha256`` with them, as :func:`ensure_run` finds runs.

    Returns:
        The run, or None when there is none or more than one candidate (then the caller
        loads the model and identifies the run the long way).
    """
    wanted = sorted(layers)

    def work() -> FinishedRun | None:
        with wh.session() as session:
            model = session.scalar(select(VisionModel).where(VisionModel.name == params["model"]))
            if model is None or model.n_parameters is None:
                return None
            runs = session.scalars(
                select(ExtractionRun).where(
                    ExtractionRun.model_id == model.model_id, ExtractionRun.status == "done"
                )
            ).all()
            rows = {
                row.module: row
                for row in session.scalars(select(Layer).where(Layer.model_id == model.model_id))
            }
            if any(module not in rows or rows[module].layout is None for module in wanted):
                return None
            shapes = {m: tuple(int(x) for x in json.loads(rows[m].output_shape)) for m in wanted}
            layouts = {m: parse_layout(str(rows[m].layout)) for m in wanted}
            recorded = layouts_param(layouts, shapes, params["pooling"]["tokens"])
            found: list[tuple[ExtractionRun, list[str]]] = []
            for run in runs:
                try:
                    order = json.loads(run.params).get("layers")
                except (ValueError, AttributeError):
                    continue
                if not isinstance(order, list) or sorted(order) != wanted:
                    continue
                candidate = {**params, "layers": order}
                if recorded is not None:
                    candidate["layouts"] = recorded
                if params_digest(candidate)[1] == run.params_sha256:
                    found.append((run, order))
            if len(found) != 1:
                return None
            run, order = found[0]
            return FinishedRun(
                run.run_id, order, {m: shapes[m] for m in order}, int(model.n_parameters), layouts
            )

    return with_busy_retry(work)


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
                        layout=p.layout,
                    )
                    session.add(row)
                    session.flush()
                elif row.pooling != p.pooling or row.dim != p.dim or row.layout != p.layout:
                    raise ConfigError(
                        f"layer {model_name}/{p.module} is stored with pooling {row.pooling} "
                        f"of a {row.layout} output (dim {row.dim}), not {p.pooling} of a "
                        f"{p.layout} output (dim {p.dim}): pass --name to store this pooling "
                        "as another model"
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
    text, digest = params_digest(params)

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
