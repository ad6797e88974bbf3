"""``semwh extract --backend ray``: the local job's shards, driven by Ray Data.

The driver plans the job exactly as the local backend does (:func:`semwh.extract.run_extraction`
with a :class:`RayShardRunner`): same run identity, same shards, same resume. Ray Data then
streams the images of the shards still to do through CPU tasks that decode them and GPU (or
CPU) actors that run :func:`semwh.extract.extract_batch` on the model, fractional GPUs allowed.
Only pooled vectors and top-k predictions travel back; the driver reassembles each shard, and
as soon as one is complete writes its Parquet files and registers them in one transaction (the
local backend's ``write_and_register``), so workers never touch the registry and a killed job
resumes from its last registered shard.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from semwh.errors import ConfigError, InputError, ResourceError
from semwh.extract.batches import ProbedModel, extract_batch, top_predictions
from semwh.extract.hooks import Pooling
from semwh.extract.job import ExtractionSummary, run_extraction
from semwh.extract.layouts import parse_layout
from semwh.extract.networks import LoadedModel, load_model
from semwh.extract.options import ExtractionOptions
from semwh.extract.plan import ExtractionPlan
from semwh.extract.preprocess import Preprocessing
from semwh.extract.rows import ImageRow
from semwh.extract.shards import (
    ShardWork,
    check_shard_images,
    resolve_path,
    shard_rows,
    write_and_register,
)
from semwh.progress import Progress, check_progress, report
from semwh.ray.session import import_ray, ray_session, semwh_cause
from semwh.warehouse.layout import Warehouse


@dataclass(frozen=True)
class ModelRecipe:
    """How every actor rebuilds the driver's model (weights are loaded on the worker).

    Attributes:
        architecture: Architecture passed to :func:`semwh.extract.load_model`.
        weights: Weights choice (``default``, a torchvision member, ``none``).
        weights_file: A state dict every node can read (shared filesystem), or None.
        seed: Seed of random weights.
        name: Registry model name.
        weights_sha256: The driver's weights hash; an actor whose weights differ refuses to run.
        layers: Probe layers (module paths, forward order).
        pooling: The pooling rule.
        precision: Resolved precision (``fp32``, ``bf16``, ``fp16``).
        channels_last: Channels-last memory format on GPU actors.
        layouts: The driver's checked layout of each probe layer (actors pool by them).
        preprocessing: The request's preprocessing (None: the source's own).
        layout_overrides: The request's declared layouts.
    """

    architecture: str
    weights: str
    weights_file: str | None
    seed: int
    name: str | None
    weights_sha256: str
    layers: tuple[str, ...]
    pooling: Pooling
    precision: str
    channels_last: bool
    layouts: tuple[tuple[str, str], ...] = ()
    preprocessing: Any = None
    layout_overrides: Any = None


def decode_batch(batch: dict[str, np.ndarray], preprocessing: Preprocessing) -> dict[str, Any]:
    """Decode, resize and crop a batch of image files to uint8 arrays (runs in CPU tasks)."""
    images = np.stack([preprocessing.load(str(path)).numpy() for path in batch["path"]])
    return {"shard": batch["shard"], "pos": batch["pos"], "image": images}


class ExtractActor:
    """The probed model on one worker; called with decoded batches."""

    def __init__(self, recipe: ModelRecipe, use_gpu: bool) -> None:
        import torch

        loaded = load_model(
            recipe.architecture,
            weights=recipe.weights,
            weights_file=recipe.weights_file,
            seed=recipe.seed,
            name=recipe.name,
            preprocessing=recipe.preprocessing,
            layouts=recipe.layout_overrides,
        )
        if loaded.weights_sha256 != recipe.weights_sha256:
            raise InputError(
                f"a Ray worker loaded other weights for {recipe.architecture} ({loaded.weights}, "
                f"sha256 {loaded.weights_sha256[:12]}...) than the driver "
                f"({recipe.weights_sha256[:12]}...): give every node the same weights, e.g. "
                "--weights-file on a shared filesystem"
            )
        device = torch.device("cuda" if use_gpu else "cpu")
        self.layers = list(recipe.layers)
        self.model = ProbedModel(
            loaded.module,
            self.layers,
            recipe.pooling,
            loaded.preprocessing,
            device,
            recipe.precision,
            recipe.channels_last and use_gpu,
            layouts={layer: parse_layout(text) for layer, text in recipe.layouts},
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        images = torch.from_numpy(np.ascontiguousarray(batch["image"]))
        pooled, logits = extract_batch(self.model, images)
        # The same operations as the local backend's run_shard, so predictions match it.
        indices, values = top_predictions(logits, images.shape[0])
        out: dict[str, np.ndarray] = {
            "shard": np.asarray(batch["shard"]),
            "pos": np.asarray(batch["pos"]),
            "top_index": indices.cpu().numpy().astype(np.int64),
            "top_prob": values.cpu().numpy().astype(np.float32),
        }
        for i, layer in enumerate(self.layers):
            out[f"layer_{i}"] = pooled[layer].float().cpu().numpy()
        return out


class _ShardBuffer:
    """One shard's rows as they come back from the actors, in any order."""

    def __init__(self, rows: list[ImageRow]) -> None:
        self.rows = rows
        self.filled = np.zeros(len(rows), dtype=bool)
        self.columns: dict[str, np.ndarray] = {}

    def put(self, pos: np.ndarray, batch: dict[str, np.ndarray], keys: list[str]) -> None:
        for key in keys:
            values = batch[key]
            if key not in self.columns:
                shape = (len(self.rows), *values.shape[1:])
                self.columns[key] = np.empty(shape, dtype=values.dtype)
            self.columns[key][pos] = values
        self.filled[pos] = True

    @property
    def complete(self) -> bool:
        return bool(self.filled.all())


class RayShardRunner:
    """Runs an extraction's remaining shards on Ray; the driver writes and registers them.

    Passed as ``shard_runner`` to :func:`semwh.extract.run_extraction`, which calls it with
    the plan and the shards still to do.
    """

    def __init__(
        self,
        recipe_args: dict[str, Any],
        *,
        address: str | None = None,
        gpus_per_actor: float = 0.0,
        actors: int | None = None,
        cpus_per_actor: float = 1.0,
    ) -> None:
        self.recipe_args = recipe_args
        self.address = address
        self.gpus_per_actor = gpus_per_actor
        self.actors = actors
        self.cpus_per_actor = cpus_per_actor

    def __call__(self, wh: Warehouse, work: ShardWork) -> int:
        """Extract the shards in ``work.todo``; returns the number of images processed."""
        probed, loaded, plan, todo = work.probed, work.loaded, work.plan, work.todo
        if not todo:
            return 0
        recipe = ModelRecipe(
            weights_sha256=loaded.weights_sha256,
            layers=tuple(p.module for p in plan.layers),
            pooling=probed.pooling,
            precision=probed.precision,
            layouts=tuple((p.module, p.layout) for p in plan.layers),
            **self.recipe_args,
        )
        shards = {s: shard_rows(work.images, plan, s) for s in todo}
        for rows in shards.values():
            check_shard_images(wh, rows)
        items = [
            {"shard": s, "pos": i, "path": resolve_path(wh, row.path)}
            for s, rows in shards.items()
            for i, row in enumerate(rows)
        ]
        with ray_session(self.address) as ray:
            try:
                return self._stream(
                    ray, wh, loaded, plan, recipe, shards, items, work.run_id, work.layer_ids,
                    work.batch_size, work.progress, work.shard_pause,
                )  # fmt: skip
            except Exception as exc:
                # A worker's semwh error arrives wrapped by Ray: raise the original.
                cause = semwh_cause(exc)
                if cause is exc:
                    raise
                if cause is not None:
                    raise cause from exc
                if isinstance(exc, ray.exceptions.RayError):
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                    raise ResourceError(
                        f"the Ray extraction of {loaded.name} failed ({type(exc).__name__}: "
                        f"{first}); shards registered so far are kept: run the same command "
                        "again to resume"
                    ) from exc
                raise

    def _actor_pool_size(self, ray: Any) -> int:
        if self.actors is not None:
            if self.actors < 1:
                raise ConfigError("--actors must be at least 1")
            return self.actors
        if self.gpus_per_actor > 0:
            gpus = float(ray.cluster_resources().get("GPU", 0.0))
            if gpus < self.gpus_per_actor:
                raise ConfigError(
                    f"--gpus-per-actor {self.gpus_per_actor} but the Ray cluster has {gpus:g} "
                    "GPUs: pass --gpus-per-actor 0 to run the model on CPU actors"
                )
            return max(1, math.floor(gpus / self.gpus_per_actor + 1e-9))
        return 1

    def _stream(
        self,
        ray: Any,
        wh: Warehouse,
        loaded: LoadedModel,
        plan: ExtractionPlan,
        recipe: ModelRecipe,
        shards: dict[int, list[ImageRow]],
        items: list[dict[str, Any]],
        run_id: int,
        layer_ids: dict[str, int],
        batch_size: int,
        progress: Progress | None,
        shard_pause: float,
    ) -> int:
        context = ray.data.DataContext.get_current()
        # Shards then complete in order, so each is registered as soon as its rows are back.
        context.execution_options.preserve_order = True
        dataset = (
            ray.data.from_items(
                items, override_num_blocks=max(1, math.ceil(len(items) / batch_size))
            )
            .map_batches(
                decode_batch,
                fn_kwargs={"preprocessing": loaded.preprocessing},
                batch_size=batch_size,
                num_cpus=1,
            )
            .map_batches(
                ExtractActor,
                fn_constructor_kwargs={"recipe": recipe, "use_gpu": self.gpus_per_actor > 0},
                batch_size=batch_size,
                compute=ray.data.ActorPoolStrategy(size=self._actor_pool_size(ray)),
                num_cpus=self.cpus_per_actor,
                num_gpus=self.gpus_per_actor,
            )
        )
        keys = ["top_index", "top_prob"] + [f"layer_{i}" for i in range(len(recipe.layers))]
        buffers = {s: _ShardBuffer(rows) for s, rows in shards.items()}
        what = f"extract {loaded.name} (ray)"
        processed = 0
        last = time.perf_counter()
        report(progress, what, 0, len(items))
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            shard_of = np.asarray(batch["shard"], dtype=np.int64)
            for s in np.unique(shard_of):
                mask = shard_of == s
                part = {key: batch[key][mask] for key in keys}
                buffer = buffers[int(s)]
                buffer.put(np.asarray(batch["pos"], dtype=np.int64)[mask], part, keys)
                if buffer.complete:
                    now = time.perf_counter()
                    self._register(
                        wh, loaded, plan, recipe, int(s), buffer, run_id, layer_ids,
                        now - last, shard_pause,
                    )  # fmt: skip
                    last = time.perf_counter()
                    del buffers[int(s)]
            processed += len(shard_of)
            report(progress, what, processed, len(items))
        if buffers:
            raise ResourceError(
                f"the Ray extraction of {loaded.name} returned no rows for shards "
                f"{', '.join(str(s) for s in sorted(buffers))}: run the same command again to "
                "resume"
            )
        return processed

    @staticmethod
    def _register(
        wh: Warehouse,
        loaded: LoadedModel,
        plan: ExtractionPlan,
        recipe: ModelRecipe,
        shard_index: int,
        buffer: _ShardBuffer,
        run_id: int,
        layer_ids: dict[str, int],
        seconds: float,
        shard_pause: float,
    ) -> None:
        from semwh.extract.batches import ShardOutput

        output = ShardOutput(
            vectors={
                layer: buffer.columns[f"layer_{i}"].astype(np.float32, copy=False)
                for i, layer in enumerate(recipe.layers)
            },
            top_index=buffer.columns["top_index"],
            top_prob=buffer.columns["top_prob"],
        )
        write_and_register(
            wh,
            loaded=loaded,
            run_id=run_id,
            shard_index=shard_index,
            images=buffer.rows,
            output=output,
            layer_ids=layer_ids,
            plan=plan,
            seconds=seconds,
            pause=shard_pause,
        )


def _gpu_precision(ray: Any, gpus_per_actor: float) -> str:
    """What ``--precision auto`` means on the cluster's GPUs (asked of a GPU worker)."""

    def resolve() -> str:
        import torch

        from semwh.extract.batches import resolve_precision

        return resolve_precision("auto", torch.device("cuda"))

    return ray.get(ray.remote(num_gpus=gpus_per_actor, num_cpus=0)(resolve).remote())


def run_extraction_ray(
    wh: Warehouse,
    options: ExtractionOptions,
    *,
    ray_address: str | None = None,
    gpus_per_actor: float = 0.0,
    actors: int | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    on_plan: Callable[[ExtractionPlan], None] | None = None,
    shard_pause: float = 0.0,
) -> ExtractionSummary:
    """:func:`semwh.extract.run_extraction` with the shards run on Ray.

    The job (its run, shards, resume and registration) is the local backend's; only where the
    batches run differs. The driver loads the model once to plan the job (layer shapes, weights
    hash) and writes and registers every shard; actors rebuild the model from the same
    options and refuse to run if their weights differ.

    Args:
        wh: The warehouse (its registry and vectors folder must be reachable by the driver;
            image paths by every worker).
        options: As for :func:`semwh.extract.run_extraction`, except: ``weights_file`` must be
            readable on every node; ``precision`` ``auto`` resolves on a GPU worker (bf16 or
            fp16) with GPUs, fp32 without; ``channels_last`` defaults to on with GPUs;
            ``device`` must be None, ``auto`` or ``cpu`` (``gpus_per_actor`` places the
            model, the driver only plans on its CPU); ``shard`` must be None.
        ray_address: Ray cluster to join (``auto``, ``HOST:PORT``, ``ray://HOST:10001``);
            None starts a small local Ray (or joins ``RAY_ADDRESS`` under ``ray job submit``).
        gpus_per_actor: GPUs each model actor reserves (fractions share a GPU); 0 runs the
            model on CPU actors.
        actors: Number of model actors (default: as many as the cluster's GPUs allow, one
            without GPUs).
        dry_run: As for :func:`semwh.extract.run_extraction`.
        progress: Told the images done (``extract MODEL (ray)``) as batches come back.
        on_plan: As for :func:`semwh.extract.run_extraction`.
        shard_pause: As for :func:`semwh.extract.run_extraction`.

    Raises:
        MissingDependencyError: Ray is not installed.
        ConfigError: Invalid options, or the cluster cannot be reached.
    """
    check_progress(progress)
    import_ray()
    if options.device not in (None, "", "auto", "cpu"):
        raise ConfigError(
            f"--device {options.device} does not apply to the ray backend: the model runs in "
            "Ray actors; pass --gpus-per-actor (e.g. 1 or 0.5) to place them on GPUs"
        )
    if gpus_per_actor < 0:
        raise ConfigError("--gpus-per-actor must be 0 or more")
    if options.shard is not None:
        raise ConfigError("--shard splits a job between local processes; Ray splits it itself")
    channels_last = options.channels_last
    weights_file = options.weights_file
    runner = RayShardRunner(
        {
            "architecture": options.model,
            "weights": options.weights,
            "weights_file": None if weights_file is None else str(weights_file),
            "seed": options.seed,
            "name": options.name,
            "channels_last": gpus_per_actor > 0 if channels_last is None else channels_last,
            "preprocessing": options.preprocessing,
            "layout_overrides": options.layouts,
        },
        address=ray_address,
        gpus_per_actor=gpus_per_actor,
        actors=actors,
    )
    # The driver plans on its CPU; the actors run the model where gpus_per_actor puts them.
    driver = replace(options, device="cpu", channels_last=False)
    calls: dict[str, Any] = dict(
        dry_run=dry_run,
        progress=progress,
        on_plan=on_plan,
        shard_pause=shard_pause,
        shard_runner=runner,
    )
    if options.precision == "auto" and gpus_per_actor > 0:
        # Resolve where the model will run, so the run records the precision actually used.
        with ray_session(ray_address) as ray:
            resolved = _gpu_precision(ray, gpus_per_actor)
            return run_extraction(wh, replace(driver, precision=resolved), **calls)
    resolved = "fp32" if options.precision == "auto" else options.precision
    return run_extraction(wh, replace(driver, precision=resolved), **calls)
