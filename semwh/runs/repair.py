"""`semwh repair`: find damaged vector files and images, and rebuild or release what is damaged.

Every registered vector file is re-hashed and every image file too (the checks of
``semwh verify --all``). Then, for each damaged vector file:

* a per-image shard file (an extraction's output): the whole shard leaves the registry and
  the disk (all its layers, registered together) and its run is marked unfinished, so the
  same ``semwh extract`` command extracts that shard again and finishes the run;
* a layer space's concept file: rebuilt from the run's intact per-image shards when they still
  give the space's recorded content (else the space waits for the shard's re-extraction);
* any other space's concept file (word, external, RDM, text layers): its ingest command, run
  again, rewrites it (an unchanged source whose file is damaged is ingested again).

Images whose file is gone or changed are reported with what repairs them (restore the file,
or ingest its folder again, which drops or replaces the image); repair never drops an image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlalchemy import delete, select

from semwh.ingest.image_checks import RecordedImage, image_problems, repair_hint
from semwh.vectors import save_space
from semwh.vectors.store import file_problem
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import (
    ExtractionRun,
    ExtractionShard,
    Image,
    Source,
    Space,
    VectorFile,
    VisionModel,
    WordModel,
)

REBUILT = "rebuilt"
RELEASED = "released"
TO_DO = "to do"


@dataclass(frozen=True)
class Damage:
    """One damaged file: what it is, what is wrong, and what repairs it (or what was done)."""

    what: str
    path: str
    problem: str
    repair: str
    status: str = TO_DO

    def line(self) -> str:
        return f"{self.what} {self.path} {self.problem}: {self.repair}"


@dataclass
class RepairReport:
    """What ``repair`` found and did; ``ok`` when nothing is left for the user to do."""

    damage: list[Damage] = field(default_factory=list)
    n_files: int = 0
    n_images: int = 0

    @property
    def ok(self) -> bool:
        return all(d.status == REBUILT for d in self.damage)

    def summary(self) -> str:
        if not self.damage:
            return (
                f"checked {self.n_files} vector file(s) and {self.n_images} image(s): "
                "all match their records"
            )
        counts: dict[str, int] = {}
        for d in self.damage:
            counts[d.status] = counts.get(d.status, 0) + 1
        done = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        return (
            f"checked {self.n_files} vector file(s) and {self.n_images} image(s): "
            f"{len(self.damage)} damaged ({done})"
        )


def _all_files(wh: Warehouse) -> list[VectorFile]:
    with wh.session() as session:
        return list(session.scalars(select(VectorFile).order_by(VectorFile.file_id)).all())


def _all_images(wh: Warehouse) -> list[RecordedImage]:
    with wh.session() as session:
        rows = session.execute(
            select(Image.image_id, Image.concept, Image.path, Image.sha256).order_by(Image.image_id)
        ).all()
    return [RecordedImage(r.image_id, r.concept, r.path, r.sha256) for r in rows]


def damaged_files(wh: Warehouse) -> tuple[list[VectorFile], list[tuple[VectorFile, str]]]:
    """(every registered vector file, [(file, problem)] of the damaged ones), re-hashed."""
    files = _all_files(wh)
    found = [(f, problem) for f in files if (problem := file_problem(wh, f)) is not None]
    return files, found


def image_damage(wh: Warehouse) -> tuple[int, list[Damage]]:
    """(number checked, damage) over every registered image, re-hashed."""
    images = _all_images(wh)
    return len(images), [
        Damage(
            "image",
            image.path,
            f"(image_id {image.image_id}, concept {image.concept}) {problem}",
            repair_hint(wh, image.image_id),
        )
        for image, problem in image_problems(wh, images)
    ]


def check_all(wh: Warehouse) -> RepairReport:
    """Every vector file and image re-hashed; each damaged one with the command to repair it.

    Reads only (works on a read-only warehouse: pass ``wh.reader()``).
    """
    report = RepairReport()
    every, files = damaged_files(wh)
    report.n_files = len(every)
    root = wh.vectors
    for file, problem in files:
        report.damage.append(
            Damage("vector file", root.show(file.path), problem, "run `semwh repair`")
        )
    report.n_images, images = image_damage(wh)
    report.damage.extend(images)
    return report


def repair(wh: Warehouse) -> RepairReport:
    """Check every vector file and image, then rebuild or release each damaged vector file.

    Returns:
        Each damaged file with what was done (``rebuilt``: whole again; ``released``: left
        for the named command to rebuild) or what the user must do (``to do``).
    """
    report = RepairReport()
    every, files = damaged_files(wh)
    report.n_files = len(every)
    # An extraction's shards are extracted again; the files of an ingested space (its
    # concept vectors, or per-image rows ingested at the image level) are ingested again.
    shards = _by_shard([(f, p) for f, p in files if _is_shard(f)])
    concepts = [(f, p) for f, p in files if not _is_shard(f)]
    # Layers with a shard to extract again: their spaces are rebuilt when the run finishes.
    released_layers = {
        f.layer_id
        for f in every
        if _is_shard(f) and (int(f.run_id or 0), int(f.shard_index or 0)) in shards
    }
    for (run_id, shard_index), (path, problem) in shards.items():
        report.damage.append(_release_shard(wh, run_id, shard_index, path, problem))
    for file, problem in concepts:
        report.damage.append(_repair_concepts(wh, file, problem, released_layers))
    report.n_images, images = image_damage(wh)
    report.damage.extend(images)
    return report


def _is_shard(file: VectorFile) -> bool:
    return file.kind == "images" and file.run_id is not None


def _by_shard(
    files: list[tuple[VectorFile, str]],
) -> dict[tuple[int, int], tuple[str, str]]:
    """(run, shard) -> (path, problem) of its first damaged file."""
    out: dict[tuple[int, int], tuple[str, str]] = {}
    for f, problem in files:
        out.setdefault((int(f.run_id or 0), int(f.shard_index or 0)), (f.path, problem))
    return out


def _extract_command(run: ExtractionRun, model: VisionModel | None) -> str:
    params = json.loads(run.params or "{}")
    arch = params.get("architecture") or (model.architecture if model else "MODEL")
    command = f"semwh extract {arch}"
    if params.get("layers"):
        command += f" --layers {','.join(params['layers'])}"
    if params.get("shard_size"):
        command += f" --shard-size {params['shard_size']}"
    return f"`{command}` with the other options of run {run.run_id} (extraction_runs.params)"


def _release_shard(wh: Warehouse, run_id: int, shard_index: int, path: str, problem: str) -> Damage:
    """Take a damaged shard (every layer's file) out of the registry and the disk; the run
    becomes unfinished so that the same extraction resumes with that shard."""
    with wh.session() as session:
        rows = session.scalars(
            select(VectorFile).where(
                VectorFile.run_id == run_id,
                VectorFile.shard_index == shard_index,
                VectorFile.kind == "images",
            )
        ).all()
        paths = [r.path for r in rows]
        session.execute(delete(VectorFile).where(VectorFile.file_id.in_([r.file_id for r in rows])))
        session.execute(
            delete(ExtractionShard).where(
                ExtractionShard.run_id == run_id, ExtractionShard.shard_index == shard_index
            )
        )
        run = session.get(ExtractionRun, run_id)
        model = session.get(VisionModel, run.model_id) if run is not None else None
        if run is not None:
            run.status = "running"
    root = wh.vectors
    for rel in paths:
        root.delete(rel)
    command = _extract_command(run, model) if run is not None else "`semwh extract`"
    name = model.name if model is not None else f"run {run_id}"
    return Damage(
        "vector file",
        root.show(path),
        problem,
        f"shard {shard_index} of extraction run {run_id} ({name}) was taken out of the "
        f"registry; run {command} to extract it again",
        RELEASED,
    )


def _repair_concepts(
    wh: Warehouse, file: VectorFile, problem: str, released_layers: set[int | None]
) -> Damage:
    shown = wh.vectors.show(file.path)
    with wh.session() as session:
        space = session.get(Space, file.space_id) if file.space_id is not None else None
        source = _source_of(session, space)
    if space is None:
        return Damage("vector file", shown, problem, "it belongs to no space: delete it")
    if space.kind == "layer" and space.layer_id is not None:
        if space.layer_id in released_layers:
            return Damage(
                "vector file",
                shown,
                problem,
                f"space {space.name!r} is rebuilt when its damaged shards are extracted again",
                RELEASED,
            )
        if _rebuild_layer_space(wh, space):
            return Damage(
                "vector file",
                shown,
                problem,
                f"space {space.name!r} rebuilt from its per-image shards",
                REBUILT,
            )
        return Damage(
            "vector file",
            shown,
            problem,
            f"space {space.name!r}: its shards no longer give its recorded content; run the "
            "extraction again",
        )
    if space.kind == "text-layer":
        hint = f"run the `semwh embed` command that made {space.model!r} again"
    elif source is not None:
        hint = (
            f"run the command that ingested {space.name!r} again (its source: {source.path}); "
            "an unchanged source rewrites its damaged file"
        )
    else:
        hint = f"ingest {space.name!r} again"
    return Damage("vector file", shown, problem, f"space {space.name!r}: {hint}")


def _source_of(session, space: Space | None) -> Source | None:  # noqa: ANN001
    if space is None:
        return None
    source_id = space.source_id
    if source_id is None and space.word_model_id is not None:
        model = session.get(WordModel, space.word_model_id)
        source_id = model.source_id if model is not None else None
    return session.get(Source, source_id) if source_id is not None else None


def _rebuild_layer_space(wh: Warehouse, space: Space) -> bool:
    """Concept means of a layer again from its registered per-image shards (each checked),
    stored only when they hash to the space's recorded content."""
    from semwh.errors import DuplicateError, SemwhError
    from semwh.extract.finalize import read_layer  # imports torch: only here
    from semwh.vectors.store import concept_means, content_sha256

    with wh.session() as session:
        files = list(
            session.scalars(
                select(VectorFile)
                .where(VectorFile.layer_id == space.layer_id, VectorFile.kind == "images")
                .order_by(VectorFile.shard_index)
            ).all()
        )
    if not files:
        return False
    try:
        concept_ids, matrix = read_layer(wh, files, space.name)
    except SemwhError:
        return False
    concepts, means = concept_means(concept_ids, matrix)
    if content_sha256(concepts, means.astype("float32")) != space.content_sha256:
        return False
    try:
        save_space(
            wh,
            space.name,
            "layer",
            concepts,
            means,
            model=space.model,
            layer=space.layer,
            layer_id=space.layer_id,
            depth_index=space.depth_index,
            relative_depth=space.relative_depth,
        )
    except DuplicateError:
        return False
    return True
