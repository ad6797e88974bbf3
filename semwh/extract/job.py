"""Extraction jobs: the top-level run over plan, shards, resume and registration.

A job is identified by ``extraction_runs.params_sha256`` (model, weights hash, layers,
pooling, preprocessing, precision, shard size and the hash of the image set). The image list
(``images`` ordered by image_id) is cut into shards; a shard's Parquet files (one per layer)
are written completely, then registered in ONE transaction with its ``extraction_shards`` row
and its ``predictions`` rows. A killed job therefore resumes with no duplicate and no missing
row, and running a finished job again does nothing: :func:`finished_extraction` finds the
finished run from the registry and the remembered weights hash (:mod:`semwh.extract.digests`)
before any model is loaded. Registry sessions stay short (the engine opens the DuckDB file
per session) so ``semwh sql`` can read between shards.

``plan`` sizes the job, ``rows`` finds or creates its registry rows, ``shards`` writes and
registers shards, and ``finalize`` turns the finished run into concept-mean spaces.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from sqlalchemy import select

from semwh.errors import ConfigError
from semwh.extract.batches import (
    ProbedModel,
    default_num_workers,
    probe_shapes,
    resolve_device,
    resolve_precision,
)
from semwh.extract.decode import resolve_decoder
from semwh.extract.digests import WeightsDigests
from semwh.extract.finalize import finalize_run
from semwh.extract.hooks import Pooling, parse_pooling
from semwh.extract.networks import (
    ModelSpec,
    build_model,
    model_spec,
    requested_layers,
    resolve_layers,
)
from semwh.extract.options import DEFAULT_BATCH_SIZE, DEFAULT_SHARD_SIZE, ExtractionOptions
from semwh.extract.plan import (
    ExtractionPlan,
    LayerPlan,
    check_plan,
    plan_extraction,
    plan_from_shapes,
)
from semwh.extract.rows import (
    ImageRow,
    ensure_layers,
    ensure_model,
    ensure_run,
    find_finished_run,
    image_set,
    layouts_param,
    run_params,
    with_busy_retry,
)
from semwh.extract.shards import (
    ShardWork,
    check_run_files,
    clean_job_tmp,
    parse_shard,
    run_local_shards,
)
from semwh.progress import Progress, check_progress
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import ExtractionShard

# The plan and option types are part of the job's public API (semwh.extract re-exports them).
__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_SHARD_SIZE",
    "ExtractionOptions",
    "ExtractionPlan",
    "ExtractionSummary",
    "LayerPlan",
    "finished_extraction",
    "run_extraction",
]


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


@dataclass(frozen=True)
class _JobSettings:
    """The validated settings of a request, shared by :func:`run_extraction` and
    :func:`finished_extraction`."""

    slice_: tuple[int, int] | None
    pool: Pooling
    device: torch.device
    precision: str
    num_workers: int
    shard_size: int
    batch_size: int

    def mine(self, n_shards: int) -> list[int]:
        """The shards this process runs (all of them, or slice i of n)."""
        s = self.slice_
        return [i for i in range(n_shards) if s is None or i % s[1] == s[0]]


def _job_settings(options: ExtractionOptions) -> _JobSettings:
    """Validate and resolve a request's settings.

    Raises:
        ConfigError: Invalid sizes, shard, pooling, device or precision.
    """
    if options.batch_size < 1 or options.shard_size < 1:
        raise ConfigError("--batch-size and --shard-size must be positive")
    torch_device = resolve_device(options.device)
    num_workers = options.num_workers
    return _JobSettings(
        slice_=parse_shard(options.shard),
        pool=parse_pooling(options.pooling, options.token_pooling, options.seed),
        device=torch_device,
        precision=resolve_precision(options.precision, torch_device),
        num_workers=default_num_workers(torch_device) if num_workers is None else num_workers,
        shard_size=options.shard_size,
        batch_size=options.batch_size,
    )


def _model_spec(options: ExtractionOptions) -> ModelSpec:
    return model_spec(
        options.model,
        weights=options.weights,
        weights_file=options.weights_file,
        seed=options.seed,
        name=options.name,
        preprocessing=options.preprocessing,
        layouts=options.layouts,
    )


def run_extraction(
    wh: Warehouse,
    options: ExtractionOptions,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    on_plan: Callable[[ExtractionPlan], None] | None = None,
    shard_pause: float = 0.0,
    shard_runner: Callable[[Warehouse, ShardWork], int] | None = None,
) -> ExtractionSummary:
    """Extract pooled activations of a model's probe layers for every image in the warehouse.

    Args:
        wh: The warehouse.
        options: The model, its layers and pooling, and how the job runs
            (:class:`semwh.extract.ExtractionOptions`).
        dry_run: Plan and register nothing.
        progress: Told the images done (``extract MODEL``) as batches finish.
        on_plan: Called with the plan before anything runs (the CLI prints it).
        shard_pause: Seconds to sleep after each registered shard (lets readers in; tests use
            it to kill a job between shards).
        shard_runner: Runs the shards in ``todo`` with the signature of ``run_local_shards``
            (default: this process); the Ray backend (:mod:`semwh.ray.extract`) passes its
            runner.

    Returns:
        What was done; ``status`` is ``unchanged`` when the run had already completed.

    Raises:
        ResourceError: The job would not fit on disk or in memory.
        NotFoundError: Unknown model or weights.
        ConfigError: Invalid layers, pooling, shard or device.
    """
    check_progress(progress)
    job = _job_settings(options)
    slice_, pool, torch_device, precision = job.slice_, job.pool, job.device, job.precision
    workers = job.num_workers
    layers, shard_size, batch_size = options.layers, options.shard_size, options.batch_size
    channels_last = options.channels_last
    use_channels_last = torch_device.type == "cuda" if channels_last is None else channels_last
    use_decoder = resolve_decoder(options.decoder, torch_device)

    # A finished run is found before the model is loaded: loading and hashing large weights
    # took most of an up-to-date run's time.
    digests = WeightsDigests.of_warehouse(wh.root)
    images, images_sha = image_set(wh)
    spec = _model_spec(options)
    if not dry_run and images:
        unchanged = _unchanged_run(wh, spec, layers, job, (images, images_sha), digests)
        if unchanged is not None:
            if on_plan is not None:
                on_plan(unchanged.plan)
            return unchanged

    loaded = build_model(spec, digests)
    probe_layers = resolve_layers(loaded, layers)
    probed = ProbedModel(
        loaded.module,
        probe_layers,
        pool,
        loaded.preprocessing,
        torch_device,
        precision,
        use_channels_last,
        use_decoder,
    )
    try:
        if not images:
            raise ConfigError("the warehouse has no images: run `semwh ingest images DIR` first")
        n_shards = math.ceil(len(images) / shard_size)
        probed_shapes = probe_shapes(
            probed, loaded.layouts, drop_unused=layers in (None, "default", [])
        )
        order, shapes = probed_shapes
        assert probed.layouts is not None
        params = run_params(
            loaded.identity, order, pool, precision, shard_size, images_sha, len(images),
            layouts_param(probed.layouts, shapes, pool.tokens),
        )  # fmt: skip
        n_concepts = len({row.concept for row in images})
        # A dry run must not write: look the run up without creating it.
        done: set[int] = set()
        status = "new"
        run_id = 0
        if not dry_run:
            model_id = ensure_model(wh, loaded)
            run_id, status, done = ensure_run(
                wh, model_id, params, len(images), n_shards, str(torch_device)
            )
        mine = job.mine(n_shards)
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
            check_run_files(wh, run_id, loaded.name)
            summary.status = "unchanged"
            summary.spaces = [f"{loaded.name}/{p.module}" for p in plan.layers]
            return summary
        check_plan(plan)
        layers_registered = ensure_layers(wh, model_id, loaded.name, plan.layers)
        layer_ids = {module: ids[0] for module, ids in layers_registered.items()}
        summary.tmp_removed = clean_job_tmp(wh, parallel=slice_ is not None and slice_[1] > 1)

        started = time.perf_counter()
        work = ShardWork(
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
        processed = (shard_runner or run_local_shards)(wh, work)
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
            summary.spaces = finalize_run(
                wh, loaded, run_id, plan, layers_registered, str(torch_device), summary.images_per_s
            )
            summary.status = "done"
        else:
            summary.status = "partial"
        return summary
    finally:
        probed.close()


def finished_extraction(wh: Warehouse, options: ExtractionOptions) -> ExtractionSummary | None:
    """The completed run that :func:`run_extraction` with these options would find.

    Answers without loading the model (see :func:`_unchanged_run`), so a pipeline can ask
    whether a step is up to date in about the time it takes to read the registry.
    :func:`run_extraction` asks this first.

    Returns:
        The summary ``run_extraction`` returns for a completed run (status ``unchanged``), or
        None: no completed run, or one that cannot be identified without the model (random
        weights, torchvision weights not downloaded yet, an invalid request).

    Raises:
        ConfigError: Invalid pooling, shard, sizes or device.
    """
    job = _job_settings(options)
    images = image_set(wh)
    if not images[0]:
        return None
    spec = _model_spec(options)
    digests = WeightsDigests.of_warehouse(wh.root)
    return _unchanged_run(wh, spec, options.layers, job, images, digests)


def _unchanged_run(
    wh: Warehouse,
    spec: ModelSpec,
    layers: str | list[str] | None,
    job: _JobSettings,
    image_set_: tuple[list[ImageRow], str],
    digests: WeightsDigests,
) -> ExtractionSummary | None:
    """The summary of a completed run of this request, found without loading the model.

    The run's identity needs the weights hash (remembered by ``digests`` while the file is
    unchanged), the probe layers in forward order and their shapes (registered by the run:
    :func:`find_finished_run` matches the requested set of layers, taken from the model's
    structure on the meta device). Returns None whenever any of this is not known (random
    weights, a weights file not yet downloaded or unreadable, no completed run, an invalid
    request): the caller then loads the model, which also reports any error in its order.
    """
    images, images_sha = image_set_
    # Declared layouts are checked against a forward pass: the long way identifies the run.
    if spec.layout_overrides:
        return None
    try:
        if not spec.has_weights_files():
            return None
        weights_sha = spec.weights_sha256(digests)
        wanted = requested_layers(spec, layers)
    except (OSError, ConfigError):
        return None
    params = run_params(
        spec.identity(weights_sha), None, job.pool, job.precision, job.shard_size, images_sha,
        len(images),
    )  # fmt: skip
    found = find_finished_run(wh, params, wanted)
    if found is None:
        return None
    check_run_files(wh, found.run_id, spec.name)
    mine = job.mine(math.ceil(len(images) / job.shard_size))
    plan = plan_from_shapes(
        wh,
        model=spec.name,
        n_parameters=found.n_parameters,
        crop=spec.preprocessing.crop,
        order=found.layers,
        shapes=found.shapes,
        layouts=found.layouts,
        pooling=job.pool,
        device=job.device,
        precision=job.precision,
        n_images=len(images),
        n_todo=0,
        shard_size=job.shard_size,
        batch_size=job.batch_size,
        num_workers=job.num_workers,
        n_concepts=0,
    )
    return ExtractionSummary(
        run_id=found.run_id,
        model=spec.name,
        status="unchanged",
        plan=plan,
        layers=list(found.layers),
        shards_skipped=len(mine),
        device=str(job.device),
        spaces=[f"{spec.name}/{module}" for module in found.layers],
    )
