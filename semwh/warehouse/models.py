"""The registry schema: SQLAlchemy 2.0 typed models.

Alembic revisions in ``migrations/`` create exactly these tables; a test checks that the two
never drift. Integer surrogate keys come from DuckDB sequences (``Sequence`` objects below),
natural keys (WordNet ids, space names, content hashes) carry unique constraints so duplicate
rows are impossible. JSON documents (parameters, versions, preprocessing) are stored as text
holding JSON so that every backend SQLAlchemy reaches can hold them; a result's options are
one typed JSON column (JSON on DuckDB and PostgreSQL, text holding JSON on SQLite) that SQL
reads with ``options->>'name'``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Sequence,
    String,
    Text,
    UniqueConstraint,
    case,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _seq(name: str) -> Sequence:
    return Sequence(name, metadata=Base.metadata)


SOURCE_SEQ = _seq("sources_id_seq")
IMAGE_SEQ = _seq("images_id_seq")
VISION_MODEL_SEQ = _seq("vision_models_id_seq")
LAYER_SEQ = _seq("layers_id_seq")
WORD_MODEL_SEQ = _seq("word_models_id_seq")
SPACE_SEQ = _seq("spaces_id_seq")
EXTRACTION_RUN_SEQ = _seq("extraction_runs_id_seq")
VECTOR_FILE_SEQ = _seq("vector_files_id_seq")
ANALYSIS_RUN_SEQ = _seq("analysis_runs_id_seq")
RESULT_SEQ = _seq("results_id_seq")
SWEEP_SEQ = _seq("sweeps_id_seq")
TEXT_MODEL_SEQ = _seq("text_models_id_seq")
GRID_SEQ = _seq("grids_id_seq")


# SQLite only autoincrements INTEGER PRIMARY KEY; DuckDB and PostgreSQL draw from the sequence.
ID = BigInteger().with_variant(Integer, "sqlite")


def _pk(seq: Sequence) -> Mapped[int]:
    return mapped_column(ID, seq, primary_key=True, autoincrement=False)


def _created() -> Mapped[datetime]:
    return mapped_column(DateTime, nullable=False, default=datetime.utcnow)


class Source(Base):
    """One ingested input file (or package), with its content hash and the options used."""

    __tablename__ = "sources"
    __table_args__ = (UniqueConstraint("kind", "name", "sha256", "options"),)

    source_id: Mapped[int] = _pk(SOURCE_SEQ)
    kind: Mapped[str] = mapped_column(String, nullable=False)  # concepts|images|words|space
    name: Mapped[str] = mapped_column(String, nullable=False)
    path: Mapped[str] = mapped_column(Text, nullable=False)
    format: Mapped[str | None] = mapped_column(String)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String, nullable=False)
    options: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[datetime] = _created()


class Concept(Base):
    """A concept, keyed by the lab's own id (``aardvark``, ``bean_bag`` or ``n02084071``).

    ``wnid`` is its WordNet 3.0 noun synset id where one is known (an ImageNet class's id is
    its own wnid); the WordNet enrichment (lemmas, gloss, lexname, hypernym path) comes from
    it. ``attributes`` keeps the further columns of the concept file as a JSON object.
    """

    __tablename__ = "concepts"

    concept: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str] = mapped_column(String, nullable=False)
    wnid: Mapped[str | None] = mapped_column(String, index=True)
    lemmas: Mapped[str | None] = mapped_column(Text)  # JSON list, WordNet order
    gloss: Mapped[str | None] = mapped_column(Text)
    lexname: Mapped[str | None] = mapped_column(String)
    hypernym_path: Mapped[str | None] = mapped_column(Text)  # JSON list of wnids, root first
    imagenet_index: Mapped[int | None] = mapped_column(Integer, unique=True)
    origin: Mapped[str] = mapped_column(String, nullable=False)  # imagenet1k|file|images|...
    attributes: Mapped[str | None] = mapped_column(Text)  # JSON object of further columns
    created_at: Mapped[datetime] = _created()


class Image(Base):
    """One image file, deduplicated by the SHA-256 of its bytes."""

    __tablename__ = "images"

    image_id: Mapped[int] = _pk(IMAGE_SEQ)
    concept: Mapped[str] = mapped_column(ForeignKey("concepts.concept"), nullable=False, index=True)
    #: The image's id for joins with per-image lab data: the file's stem unless given.
    stimulus: Mapped[str] = mapped_column(String, nullable=False, unique=True)
    path: Mapped[str] = mapped_column(Text, nullable=False)
    sha256: Mapped[str] = mapped_column(String, nullable=False, unique=True)
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    mode: Mapped[str] = mapped_column(String, nullable=False)
    split: Mapped[str | None] = mapped_column(String)
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.source_id"))
    created_at: Mapped[datetime] = _created()


class VisionModel(Base):
    """A vision network with one set of weights; random initialisation is its own model."""

    __tablename__ = "vision_models"

    model_id: Mapped[int] = _pk(VISION_MODEL_SEQ)
    name: Mapped[str] = mapped_column(String, nullable=False, unique=True)
    architecture: Mapped[str] = mapped_column(String, nullable=False)
    weights: Mapped[str] = mapped_column(String, nullable=False)  # enum name, file:..., none
    weights_sha256: Mapped[str | None] = mapped_column(String)
    seed: Mapped[int | None] = mapped_column(Integer)
    preprocessing: Mapped[str] = mapped_column(Text, nullable=False)  # JSON
    n_parameters: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _created()


class Layer(Base):
    """A probed module of a vision model, in forward order."""

    __tablename__ = "layers"
    __table_args__ = (
        UniqueConstraint("model_id", "module"),
        UniqueConstraint("model_id", "depth_index"),
    )

    layer_id: Mapped[int] = _pk(LAYER_SEQ)
    model_id: Mapped[int] = mapped_column(ForeignKey("vision_models.model_id"), nullable=False)
    module: Mapped[str] = mapped_column(String, nullable=False)
    depth_index: Mapped[int] = mapped_column(Integer, nullable=False)
    relative_depth: Mapped[float] = mapped_column(Double, nullable=False)
    output_shape: Mapped[str] = mapped_column(String, nullable=False)  # JSON list, no batch
    pooling: Mapped[str] = mapped_column(String, nullable=False)
    dim: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = _created()
    # The axis layout of the layer's output: channels_first, channels_last, tokens[:P],
    # sequence_first[:P], vector or flat (semwh.extract.layouts; not the warehouse folder's
    # layout, semwh.warehouse.layout): which axes the pooling reduced. Every extraction writes
    # it and revision 0005 filled it for older rows; nullable only because DuckDB cannot add a
    # NOT NULL column to a table that other tables reference.
    layout: Mapped[str | None] = mapped_column(String)


class WordModel(Base):
    """A word-vector model ingested from a file or package."""

    __tablename__ = "word_models"

    word_model_id: Mapped[int] = _pk(WORD_MODEL_SEQ)
    name: Mapped[str] = mapped_column(String, nullable=False, unique=True)
    format: Mapped[str] = mapped_column(String, nullable=False)
    dim: Mapped[int] = mapped_column(Integer, nullable=False)
    vocab_size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    multiword: Mapped[str] = mapped_column(String, nullable=False)
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.source_id"))
    created_at: Mapped[datetime] = _created()


class WordToken(Base):
    """The explicit concept -> token mapping used for one word model."""

    __tablename__ = "word_tokens"

    word_model_id: Mapped[int] = mapped_column(
        ForeignKey("word_models.word_model_id"), primary_key=True
    )
    concept: Mapped[str] = mapped_column(ForeignKey("concepts.concept"), primary_key=True)
    tokens: Mapped[str | None] = mapped_column(Text)  # JSON list; null: no vector
    rule: Mapped[str] = mapped_column(String, nullable=False)  # lemma|mapping|missing


class Space(Base):
    """Vectors keyed by concept: a model layer, a word model, or an imported matrix."""

    __tablename__ = "spaces"

    space_id: Mapped[int] = _pk(SPACE_SEQ)
    name: Mapped[str] = mapped_column(String, nullable=False, unique=True)
    kind: Mapped[str] = mapped_column(String, nullable=False)  # layer|text-layer|word|external
    model: Mapped[str | None] = mapped_column(String)
    layer: Mapped[str | None] = mapped_column(String)
    layer_id: Mapped[int | None] = mapped_column(ForeignKey("layers.layer_id"))
    word_model_id: Mapped[int | None] = mapped_column(ForeignKey("word_models.word_model_id"))
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.source_id"))
    depth_index: Mapped[int | None] = mapped_column(Integer)
    relative_depth: Mapped[float | None] = mapped_column(Double)
    dim: Mapped[int] = mapped_column(Integer, nullable=False)
    n_concepts: Mapped[int] = mapped_column(Integer, nullable=False)
    content_sha256: Mapped[str | None] = mapped_column(String)
    created_at: Mapped[datetime] = _created()


class ExtractionRun(Base):
    """One extraction job: a model over an image set with fixed layers and pooling."""

    __tablename__ = "extraction_runs"

    run_id: Mapped[int] = _pk(EXTRACTION_RUN_SEQ)
    model_id: Mapped[int] = mapped_column(ForeignKey("vision_models.model_id"), nullable=False)
    params_sha256: Mapped[str] = mapped_column(String, nullable=False, unique=True)
    params: Mapped[str] = mapped_column(Text, nullable=False)  # JSON
    n_images: Mapped[int] = mapped_column(Integer, nullable=False)
    n_shards: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String, nullable=False)  # running|done
    device: Mapped[str | None] = mapped_column(String)
    images_per_s: Mapped[float | None] = mapped_column(Double)
    versions: Mapped[str | None] = mapped_column(Text)  # JSON
    started_at: Mapped[datetime] = _created()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class ExtractionShard(Base):
    """A completed slice of an extraction run; registered in one transaction with its files."""

    __tablename__ = "extraction_shards"

    run_id: Mapped[int] = mapped_column(ForeignKey("extraction_runs.run_id"), primary_key=True)
    shard_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    n_images: Mapped[int] = mapped_column(Integer, nullable=False)
    seconds: Mapped[float | None] = mapped_column(Double)
    created_at: Mapped[datetime] = _created()


class VectorFile(Base):
    """A Parquet file under the warehouse's vectors root that the ``vectors`` view reads."""

    __tablename__ = "vector_files"

    file_id: Mapped[int] = _pk(VECTOR_FILE_SEQ)
    path: Mapped[str] = mapped_column(Text, nullable=False, unique=True)  # relative to root
    kind: Mapped[str] = mapped_column(String, nullable=False)  # images|concepts
    space_id: Mapped[int | None] = mapped_column(ForeignKey("spaces.space_id"), index=True)
    layer_id: Mapped[int | None] = mapped_column(ForeignKey("layers.layer_id"), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("extraction_runs.run_id"))
    shard_index: Mapped[int | None] = mapped_column(Integer)
    n_rows: Mapped[int] = mapped_column(BigInteger, nullable=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sha256: Mapped[str] = mapped_column(String, nullable=False)
    schema_version: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = _created()


class Prediction(Base):
    """Top-k predictions of a model for an image (rank 1 is the top-1 class)."""

    __tablename__ = "predictions"

    model: Mapped[str] = mapped_column(ForeignKey("vision_models.name"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.image_id"), primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    wnid: Mapped[str] = mapped_column(String, nullable=False)
    class_index: Mapped[int] = mapped_column(Integer, nullable=False)
    probability: Mapped[float] = mapped_column(Double, nullable=False)


class AnalysisRun(Base):
    """One analysis invocation with everything needed to reproduce it."""

    __tablename__ = "analysis_runs"

    analysis_id: Mapped[int] = _pk(ANALYSIS_RUN_SEQ)
    kind: Mapped[str] = mapped_column(String, nullable=False)  # rsa|2v2|recovery|sweep
    params: Mapped[str] = mapped_column(Text, nullable=False)  # JSON
    params_sha256: Mapped[str] = mapped_column(String, nullable=False, index=True)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    semwh_version: Mapped[str] = mapped_column(String, nullable=False)
    library_versions: Mapped[str] = mapped_column(Text, nullable=False)  # JSON
    input_hashes: Mapped[str] = mapped_column(Text, nullable=False)  # JSON
    device: Mapped[str | None] = mapped_column(String)
    seconds: Mapped[float | None] = mapped_column(Double)
    started_at: Mapped[datetime] = _created()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


def options_sha256(measure: str, options: Mapping[str, Any]) -> str:
    """The reuse key of a measure's options: SHA-256 of ``{"measure": ..., **options}`` as
    canonical JSON (sorted keys, no spaces), the hash revision 0004 stored for the measures."""
    text = json.dumps(
        {"measure": measure, **options}, sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()


class Result(Base):
    """One comparison of two spaces over their shared concepts, by any measure.

    ``measure`` names it (``rsa``, ``2v2``, ``cka``, ``knn``, ``reg2v2`` or any registered
    measure) and ``options`` holds the measure's own options as JSON (e.g.
    ``{"similarity": "pearson", "method": "spearman"}``); ``options_sha256`` is their hash,
    part of the reuse key. The columns every measure shares (spaces, hashes, concept set,
    statistic, p, null reference, seed, versions) are columns. The views ``results_rsa``,
    ``results_2v2`` and ``results_measures`` show these rows in the columns of the tables
    they replaced.

    Rows load as :class:`ResultRSA`, :class:`Result2v2` or :class:`ResultMeasure` (every
    other measure), which also take and show the older column names (``rho``, ``method``,
    ``accuracy``, ``distance``, ...); :meth:`of` makes the right one for a measure.
    """

    __tablename__ = "results"

    result_id: Mapped[int] = _pk(RESULT_SEQ)
    analysis_id: Mapped[int] = mapped_column(
        ForeignKey("analysis_runs.analysis_id"), nullable=False, index=True
    )
    measure: Mapped[str] = mapped_column(String, nullable=False)
    space_a: Mapped[str] = mapped_column(String, nullable=False)
    space_b: Mapped[str] = mapped_column(String, nullable=False)
    n_concepts: Mapped[int] = mapped_column(Integer, nullable=False)
    concepts_sha256: Mapped[str] = mapped_column(String, nullable=False)
    # Content hashes of both inputs when the result was computed: a result is current while
    # they equal the spaces' content_sha256.
    space_a_sha256: Mapped[str | None] = mapped_column(String)
    space_b_sha256: Mapped[str | None] = mapped_column(String)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    options_sha256: Mapped[str] = mapped_column(String, nullable=False)
    # A readable label of the options: the RSA method, the 2 vs 2 distance, the CKA
    # estimator, "k=10", the regression distance.
    variant: Mapped[str] = mapped_column(String, nullable=False)
    # How concept similarity matrices were built (RSA, 2 vs 2); NULL for measures on vectors.
    similarity: Mapped[str | None] = mapped_column(String)
    statistic: Mapped[float] = mapped_column(Double, nullable=False)
    n_pairs: Mapped[int | None] = mapped_column(BigInteger)  # 2 vs 2 tests: pairs tested
    p_value: Mapped[float | None] = mapped_column(Double)
    n_permutations: Mapped[int] = mapped_column(Integer, nullable=False)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    bootstrap: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # The algorithm's version (semwh.analyze.versions) that computed the numbers.
    analysis_version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    null_mean: Mapped[float | None] = mapped_column(Double)
    null_q95: Mapped[float | None] = mapped_column(Double)
    ci_low: Mapped[float | None] = mapped_column(Double)
    ci_high: Mapped[float | None] = mapped_column(Double)
    # How space B was compared: NULL for vectors; ``subjects:NORMALISE`` for a target with
    # subjects (an RDM space: the statistic is the mean over its subjects).
    target: Mapped[str | None] = mapped_column(String)
    n_subjects: Mapped[int | None] = mapped_column(Integer)
    # The noise ceiling of a target with subjects, same comparator and concepts as the result.
    ceiling_lower: Mapped[float | None] = mapped_column(Double)
    ceiling_upper: Mapped[float | None] = mapped_column(Double)
    created_at: Mapped[datetime] = _created()
    # The items compared (revision 0010): ``concept`` (concept means) or ``image``
    # (stimuli; ``n_concepts`` then counts the concepts they belong to, ``concepts_sha256``
    # hashes the stimulus ids). ``permute``: how the null relabelled them (``concepts``,
    # ``images``, ``within-concept``); ``resample``: what a bootstrap drew (``concepts``,
    # ``images``). Always written; nullable as columns added to an existing table.
    level: Mapped[str | None] = mapped_column(String)
    n_items: Mapped[int | None] = mapped_column(Integer)
    permute: Mapped[str | None] = mapped_column(String)
    resample: Mapped[str | None] = mapped_column(String)
    # The parent seed of the bootstrap's resamples when it is not ``seed`` (revision 0011):
    # a sweep gives every layer of one model against one target the same one (paired
    # intervals); NULL: the resamples came from ``seed``.
    bootstrap_seed: Mapped[int | None] = mapped_column(BigInteger)

    __mapper_args__ = {
        # One class per older table: rows of any other measure load as ResultMeasure.
        "polymorphic_on": case(
            (measure == "rsa", "rsa"), (measure == "2v2", "2v2"), else_="measure"
        ),
        "polymorphic_abstract": True,
    }

    #: The columns of the older table (now a view) rows of this class were stored in.
    LEGACY_COLUMNS: ClassVar[tuple[str, ...]] = ()

    @staticmethod
    def of(measure: str, **values: Any) -> Result:
        """A new row of ``measure`` (``options``, ``statistic`` and the shared columns)."""
        cls: type[Result] = (
            ResultRSA if measure == "rsa" else Result2v2 if measure == "2v2" else ResultMeasure
        )
        return cls(measure=measure, **values)

    def __init__(self, **values: Any) -> None:
        values.setdefault("options", {})
        values.setdefault("options_sha256", options_sha256(values["measure"], values["options"]))
        values.setdefault("bootstrap", 0)
        values.setdefault("analysis_version", 1)
        values.setdefault("level", "concept")
        values.setdefault("n_items", values.get("n_concepts"))
        values.setdefault("permute", "concepts")
        values.setdefault("resample", "concepts")
        super().__init__(**values)

    @property
    def test(self) -> str:
        """The name families and ``permutation_nulls`` know the result by: its measure."""
        return self.measure

    @property
    def metric(self) -> str:
        return self.variant

    def _option(self, name: str) -> Any:
        return (self.options or {}).get(name)

    def _set_option(self, name: str, value: Any) -> None:
        """Change one option: a new document (so the change is saved), its hash, and the
        label where it shows this option."""
        old = self._option(name)
        self.options = {**(self.options or {}), name: value}
        self.options_sha256 = options_sha256(self.measure, self.options)
        if self.variant is not None and self.variant in (str(old), f"k={old}"):
            self.variant = self.variant.replace(str(old), str(value))

    @property
    def method(self) -> str | None:
        return self._option("method")

    @method.setter
    def method(self, value: str) -> None:
        self._set_option("method", value)

    @property
    def distance(self) -> str | None:
        return self._option("distance")

    @distance.setter
    def distance(self, value: str) -> None:
        self._set_option("distance", value)

    @property
    def tie_tol(self) -> float | None:
        value = self._option("tie_tol")
        return None if value is None else float(value)

    @tie_tol.setter
    def tie_tol(self, value: float) -> None:
        self._set_option("tie_tol", float(value))

    @property
    def estimator(self) -> str | None:
        return self._option("estimator")

    @estimator.setter
    def estimator(self, value: str) -> None:
        self._set_option("estimator", value)

    @property
    def k(self) -> int | None:
        value = self._option("k")
        return None if value is None else int(value)

    @k.setter
    def k(self, value: int) -> None:
        self._set_option("k", int(value))

    @property
    def penalties(self) -> str | None:
        """The ridge penalty grid as the JSON text ``results_measures`` has always shown."""
        value = self._option("penalties")
        return None if value is None else json.dumps(list(value))

    @penalties.setter
    def penalties(self, value: str | Iterable[float]) -> None:
        self._set_option("penalties", json.loads(value) if isinstance(value, str) else list(value))

    def record(self) -> dict[str, Any]:
        """The row as a dict: the older table's columns first, then the rest of ``results``."""
        out = {name: getattr(self, name) for name in self.LEGACY_COLUMNS}
        for column in self.__table__.columns:
            out.setdefault(column.key, getattr(self, column.key))
        return out


_SHARED_LEGACY = (
    "space_a",
    "space_b",
    "n_concepts",
    "concepts_sha256",
    "space_a_sha256",
    "space_b_sha256",
    "similarity",
    "p_value",
    "n_permutations",
    "seed",
    "bootstrap",
    "analysis_version",
    "null_mean",
    "null_q95",
    "ci_low",
    "ci_high",
    "created_at",
)
_SUBJECT_LEGACY = ("target", "n_subjects", "ceiling_lower", "ceiling_upper")


class ResultRSA(Result):
    """RSA between two spaces (view ``results_rsa``): ``rho`` is the statistic, ``method``
    and ``similarity`` its options."""

    __mapper_args__ = {"polymorphic_identity": "rsa"}

    LEGACY_COLUMNS = (
        "result_id", "analysis_id", "method", "rho", *_SHARED_LEGACY, *_SUBJECT_LEGACY,
    )  # fmt: skip

    def __init__(
        self,
        *,
        method: str | None = None,
        rho: float | None = None,
        similarity: str | None = None,
        **values: Any,
    ) -> None:
        values.pop("measure", None)
        if "options" not in values:
            values["options"] = {"similarity": similarity, "method": method}
        options = values["options"]
        values.setdefault("variant", options.get("method"))
        if rho is not None:
            values["statistic"] = rho
        super().__init__(measure="rsa", similarity=similarity, **values)

    @property
    def rho(self) -> float:
        return self.statistic

    @rho.setter
    def rho(self, value: float) -> None:
        self.statistic = value


class Result2v2(Result):
    """The 2 vs 2 test between two spaces (view ``results_2v2``): ``accuracy`` is the
    statistic, ``distance``, ``tie_tol`` and ``similarity`` its options."""

    __mapper_args__ = {"polymorphic_identity": "2v2"}

    LEGACY_COLUMNS = (
        "result_id", "analysis_id", "distance", "n_pairs", "accuracy", *_SHARED_LEGACY,
        "tie_tol", *_SUBJECT_LEGACY,
    )  # fmt: skip

    def __init__(
        self,
        *,
        distance: str | None = None,
        tie_tol: float | None = None,
        accuracy: float | None = None,
        similarity: str | None = None,
        **values: Any,
    ) -> None:
        values.pop("measure", None)
        if "options" not in values:
            values["options"] = {
                "similarity": similarity,
                "distance": distance,
                "tie_tol": None if tie_tol is None else float(tie_tol),
            }
        values.setdefault("variant", values["options"].get("distance"))
        if accuracy is not None:
            values["statistic"] = accuracy
        super().__init__(measure="2v2", similarity=similarity, **values)

    @property
    def accuracy(self) -> float:
        return self.statistic

    @accuracy.setter
    def accuracy(self, value: float) -> None:
        self.statistic = value


class ResultMeasure(Result):
    """Any other measure (view ``results_measures``): linear CKA (``cka``), mutual k-NN
    alignment (``knn``), regression 2 vs 2 (``reg2v2``) or a registered one."""

    __mapper_args__ = {"polymorphic_identity": "measure"}

    LEGACY_COLUMNS = (
        "result_id", "analysis_id", "measure", "variant", "space_a", "space_b", "n_concepts",
        "concepts_sha256", "space_a_sha256", "space_b_sha256", "statistic", "p_value",
        "n_permutations", "seed", "estimator", "k", "distance", "penalties", "tie_tol",
        "n_pairs", "options_sha256", "analysis_version", "null_mean", "null_q95", "created_at",
    )  # fmt: skip

    def __init__(self, *, measure: str, **values: Any) -> None:
        if "options" not in values:
            named = {
                name: values.pop(name, None)
                for name in ("estimator", "k", "distance", "penalties", "tie_tol")
            }
            if isinstance(named["penalties"], str):
                named["penalties"] = json.loads(named["penalties"])
            values["options"] = {k: v for k, v in named.items() if v is not None}
        super().__init__(measure=measure, **values)


class ResultDiff(Base):
    """The paired difference of two stored results over the same concepts: a concept
    bootstrap interval and a sign-flip permutation p-value (two-sided)."""

    __tablename__ = "results_diff"

    result_id: Mapped[int] = _pk(RESULT_SEQ)
    analysis_id: Mapped[int] = mapped_column(
        ForeignKey("analysis_runs.analysis_id"), nullable=False, index=True
    )
    # The two results: test (rsa|2v2|cka|reg2v2) and result_id in its table.
    first_test: Mapped[str] = mapped_column(String, nullable=False)
    first_result_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    second_test: Mapped[str] = mapped_column(String, nullable=False)
    second_result_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # space_a of each result (the layers compared, usually) and their content hashes.
    space_a: Mapped[str] = mapped_column(String, nullable=False)
    space_b: Mapped[str] = mapped_column(String, nullable=False)
    space_a_sha256: Mapped[str | None] = mapped_column(String)
    space_b_sha256: Mapped[str | None] = mapped_column(String)
    n_concepts: Mapped[int] = mapped_column(Integer, nullable=False)
    concepts_sha256: Mapped[str] = mapped_column(String, nullable=False)
    first_statistic: Mapped[float] = mapped_column(Double, nullable=False)
    second_statistic: Mapped[float] = mapped_column(Double, nullable=False)
    difference: Mapped[float] = mapped_column(Double, nullable=False)  # first - second
    ci_low: Mapped[float | None] = mapped_column(Double)
    ci_high: Mapped[float | None] = mapped_column(Double)
    level: Mapped[float] = mapped_column(Double, nullable=False)
    p_value: Mapped[float | None] = mapped_column(Double)
    n_bootstrap: Mapped[int] = mapped_column(Integer, nullable=False)
    n_permutations: Mapped[int] = mapped_column(Integer, nullable=False)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    analysis_version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[datetime] = _created()


class NoiseCeiling(Base):
    """The noise ceiling of RSA against an RDM space (``semwh ingest rdm``) over a concept
    set: lower bound leave-one-subject-out, upper bound all subjects, as rsatoolbox."""

    __tablename__ = "noise_ceilings"

    space: Mapped[str] = mapped_column(String, primary_key=True)
    space_sha256: Mapped[str] = mapped_column(String, primary_key=True)
    concepts_sha256: Mapped[str] = mapped_column(String, primary_key=True)
    method: Mapped[str] = mapped_column(String, primary_key=True)  # spearman|pearson
    n_concepts: Mapped[int] = mapped_column(Integer, nullable=False)
    n_subjects: Mapped[int] = mapped_column(Integer, nullable=False)
    lower: Mapped[float] = mapped_column(Double, nullable=False)
    upper: Mapped[float] = mapped_column(Double, nullable=False)
    created_at: Mapped[datetime] = _created()


class ResultRecovery(Base):
    """1 vs 2 recovery of misclassified images' true class, per layer and word space."""

    __tablename__ = "results_recovery"

    result_id: Mapped[int] = _pk(RESULT_SEQ)
    analysis_id: Mapped[int] = mapped_column(
        ForeignKey("analysis_runs.analysis_id"), nullable=False, index=True
    )
    model: Mapped[str] = mapped_column(String, nullable=False)
    layer: Mapped[str] = mapped_column(String, nullable=False)
    space_a: Mapped[str] = mapped_column(String, nullable=False)  # layer space
    space_b: Mapped[str] = mapped_column(String, nullable=False)  # word space
    n_concepts: Mapped[int] = mapped_column(Integer, nullable=False)
    concepts_sha256: Mapped[str] = mapped_column(String, nullable=False)
    space_a_sha256: Mapped[str | None] = mapped_column(String)
    space_b_sha256: Mapped[str | None] = mapped_column(String)
    # Hash of every input of the test: both spaces, the image vector files, the predictions.
    inputs_sha256: Mapped[str | None] = mapped_column(String)
    analysis_version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    similarity: Mapped[str] = mapped_column(String, nullable=False)
    n_images: Mapped[int] = mapped_column(Integer, nullable=False)
    n_success: Mapped[int] = mapped_column(Integer, nullable=False)
    accuracy: Mapped[float | None] = mapped_column(Double)  # success rate
    p_value: Mapped[float | None] = mapped_column(Double)  # binomial, one-sided, vs 0.5
    # Images of the layer's concepts with no stored prediction (never counted as tested).
    n_no_prediction: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    n_visual: Mapped[int] = mapped_column(Integer, nullable=False)
    n_visual_success: Mapped[int] = mapped_column(Integer, nullable=False)
    visual_accuracy: Mapped[float | None] = mapped_column(Double)
    visual_p_value: Mapped[float | None] = mapped_column(Double)
    mean_rank_true: Mapped[float | None] = mapped_column(Double)  # 1 = best
    median_rank_true: Mapped[float | None] = mapped_column(Double)
    n_permutations: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _created()


class RecoveryImage(Base):
    """Per-image outcome of a 1 vs 2 recovery result."""

    __tablename__ = "recovery_images"

    result_id: Mapped[int] = mapped_column(
        ForeignKey("results_recovery.result_id"), primary_key=True
    )
    image_id: Mapped[int] = mapped_column(ForeignKey("images.image_id"), primary_key=True)
    true_concept: Mapped[str] = mapped_column(String, nullable=False)
    predicted_concept: Mapped[str] = mapped_column(String, nullable=False)
    success: Mapped[bool] = mapped_column(Boolean, nullable=False)
    score_true: Mapped[float] = mapped_column(Double, nullable=False)
    score_predicted: Mapped[float] = mapped_column(Double, nullable=False)
    visual_success: Mapped[bool | None] = mapped_column(Boolean)
    rank_true: Mapped[int] = mapped_column(Integer, nullable=False)


class SubjectResult(Base):
    """One subject's statistic behind an RSA or 2 vs 2 result against a target with
    subjects (the result's statistic is their mean)."""

    __tablename__ = "subject_results"

    test: Mapped[str] = mapped_column(String, primary_key=True)  # rsa|2v2
    result_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    subject_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String, nullable=False)
    statistic: Mapped[float] = mapped_column(Double, nullable=False)


class SubjectInference(Base):
    """An inference stored beside a result's concept permutation test: a test or interval
    over subjects, concepts or both (``units`` says which the inference generalises over).

    ``test`` and ``result_id`` name an RSA or 2 vs 2 result (methods ``t``, ``wilcoxon``,
    ``sign_flip``, ``bootstrap_concepts``, ``bootstrap_subjects``, ``bootstrap_dual``) or a
    difference (``test`` = ``diff``; methods ``paired_t``, ``paired_wilcoxon``,
    ``paired_sign_flip`` over subjects).

    ``statistic`` is each test's own statistic: t for ``t``; for ``wilcoxon`` scipy's
    statistic (W+, the sum of the ranks of the subjects above chance, one-sided; the smaller
    of W+ and W- two-sided, as for ``paired_wilcoxon``); for ``sign_flip`` the mean
    difference from chance (the mean difference for ``paired_sign_flip``). Intervals have
    none. ``exact``: the p-value enumerates every sign flip, or uses Wilcoxon's exact
    distribution (no zeros or ties, at most 50 subjects).
    """

    __tablename__ = "subject_inference"

    test: Mapped[str] = mapped_column(String, primary_key=True)
    result_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    method: Mapped[str] = mapped_column(String, primary_key=True)
    units: Mapped[str] = mapped_column(String, nullable=False)  # subjects|concepts|both
    statistic: Mapped[float | None] = mapped_column(Double)
    p_value: Mapped[float | None] = mapped_column(Double)
    ci_low: Mapped[float | None] = mapped_column(Double)
    ci_high: Mapped[float | None] = mapped_column(Double)
    se: Mapped[float | None] = mapped_column(Double)
    level: Mapped[float | None] = mapped_column(Double)
    n_subjects: Mapped[int] = mapped_column(Integer, nullable=False)
    n_resamples: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    exact: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    note: Mapped[str | None] = mapped_column(String)


class PermutationNull(Base):
    """The permutation null distribution behind one RSA or 2 vs 2 result."""

    __tablename__ = "permutation_nulls"

    test: Mapped[str] = mapped_column(String, primary_key=True)  # rsa|2v2
    result_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    n_permutations: Mapped[int] = mapped_column(Integer, nullable=False)
    seed: Mapped[int] = mapped_column(BigInteger, nullable=False)
    values: Mapped[str] = mapped_column(Text, nullable=False)  # JSON list of floats


class Sweep(Base):
    """A stored family of tests: its members and their Benjamini-Hochberg FDR never change."""

    __tablename__ = "sweeps"

    sweep_id: Mapped[int] = _pk(SWEEP_SEQ)
    created_at: Mapped[datetime] = _created()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    models: Mapped[str] = mapped_column(Text, nullable=False)  # JSON list
    word_spaces: Mapped[str] = mapped_column(Text, nullable=False)  # JSON list
    tests: Mapped[str] = mapped_column(Text, nullable=False)  # JSON list: rsa|2v2|recovery
    n_permutations: Mapped[int] = mapped_column(Integer, nullable=False)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    n_tests: Mapped[int] = mapped_column(Integer, nullable=False, default=0)  # the BH family
    status: Mapped[str] = mapped_column(String, nullable=False)  # running|complete|failed|migrated
    params: Mapped[str] = mapped_column(Text, nullable=False)  # JSON: options, skipped
    analysis_id: Mapped[int | None] = mapped_column(ForeignKey("analysis_runs.analysis_id"))
    # The process that runs the sweep, so that a later sweep can tell a dead one.
    host: Mapped[str | None] = mapped_column(String)
    pid: Mapped[int | None] = mapped_column(Integer)


class SweepMember(Base):
    """One test of a sweep, with the FDR-adjusted p-value the sweep gave it."""

    __tablename__ = "sweep_members"

    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.sweep_id"), primary_key=True)
    test: Mapped[str] = mapped_column(String, primary_key=True)  # rsa|2v2|recovery
    result_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    p_fdr: Mapped[float | None] = mapped_column(Double)


class TextModel(Base):
    """A language model whose layers over concept texts are stored as ``text-layer`` spaces."""

    __tablename__ = "text_models"

    text_model_id: Mapped[int] = _pk(TEXT_MODEL_SEQ)
    name: Mapped[str] = mapped_column(String, nullable=False, unique=True)
    source: Mapped[str] = mapped_column(String, nullable=False)  # hf:ID_OR_DIR, st:DIR, ...
    loader: Mapped[str] = mapped_column(String, nullable=False)  # hf|sentence-transformers
    architecture: Mapped[str] = mapped_column(String, nullable=False)
    causal: Mapped[bool] = mapped_column(Boolean, nullable=False)
    n_layers: Mapped[int] = mapped_column(Integer, nullable=False)  # hidden states stored
    dim: Mapped[int] = mapped_column(Integer, nullable=False)
    weights_sha256: Mapped[str] = mapped_column(String, nullable=False)
    tokenizer_sha256: Mapped[str] = mapped_column(String, nullable=False)
    templates: Mapped[str] = mapped_column(Text, nullable=False)  # JSON list
    pooling: Mapped[str] = mapped_column(String, nullable=False)  # mean|cls|last
    max_length: Mapped[int] = mapped_column(Integer, nullable=False)
    n_concepts: Mapped[int] = mapped_column(Integer, nullable=False)
    concepts_sha256: Mapped[str] = mapped_column(String, nullable=False)
    n_truncated: Mapped[int] = mapped_column(Integer, nullable=False)
    truncated: Mapped[str] = mapped_column(Text, nullable=False)  # JSON [{concept, text, tokens}]
    identity_sha256: Mapped[str] = mapped_column(String, nullable=False)
    params: Mapped[str] = mapped_column(Text, nullable=False)  # JSON
    semwh_version: Mapped[str] = mapped_column(String, nullable=False)
    library_versions: Mapped[str] = mapped_column(Text, nullable=False)  # JSON
    seconds: Mapped[float | None] = mapped_column(Double)
    created_at: Mapped[datetime] = _created()


class Grid(Base):
    """A max-statistic test over a grid of stored results (one sweep family, one test).

    ``kind`` is ``grid`` (every space of side A against every space of side B) or ``peak``
    (a model's layers against one target, with a bootstrap interval of the peak's depth).
    """

    __tablename__ = "grids"

    grid_id: Mapped[int] = _pk(GRID_SEQ)
    created_at: Mapped[datetime] = _created()
    kind: Mapped[str] = mapped_column(String, nullable=False)  # grid|peak
    sweep_id: Mapped[int] = mapped_column(ForeignKey("sweeps.sweep_id"), nullable=False)
    analysis_id: Mapped[int | None] = mapped_column(ForeignKey("analysis_runs.analysis_id"))
    test: Mapped[str] = mapped_column(String, nullable=False)  # rsa|2v2
    side_a: Mapped[str] = mapped_column(String, nullable=False)  # model name or "spaces"
    side_b: Mapped[str] = mapped_column(String, nullable=False)
    n_rows: Mapped[int] = mapped_column(Integer, nullable=False)
    n_cols: Mapped[int] = mapped_column(Integer, nullable=False)
    n_cells: Mapped[int] = mapped_column(Integer, nullable=False)  # cells in the family
    n_concepts: Mapped[int] = mapped_column(Integer, nullable=False)
    concepts_sha256: Mapped[str] = mapped_column(String, nullable=False)
    n_permutations: Mapped[int] = mapped_column(Integer, nullable=False)
    seed: Mapped[int] = mapped_column(BigInteger, nullable=False)
    best_space_a: Mapped[str] = mapped_column(String, nullable=False)
    best_space_b: Mapped[str] = mapped_column(String, nullable=False)
    best_statistic: Mapped[float] = mapped_column(Double, nullable=False)
    p_fwe_best: Mapped[float] = mapped_column(Double, nullable=False)
    null_max: Mapped[str] = mapped_column(Text, nullable=False)  # JSON list, stream order
    n_bootstrap: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    level: Mapped[float | None] = mapped_column(Double)
    peak_relative_depth: Mapped[float | None] = mapped_column(Double)
    depth_ci_low: Mapped[float | None] = mapped_column(Double)
    depth_ci_high: Mapped[float | None] = mapped_column(Double)
    params: Mapped[str] = mapped_column(Text, nullable=False)  # JSON


class GridCell(Base):
    """One cell of a grid: the stored result it reads and its family-wise p."""

    __tablename__ = "grid_cells"

    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.grid_id"), primary_key=True)
    row_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    col_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    space_a: Mapped[str] = mapped_column(String, nullable=False)
    space_b: Mapped[str] = mapped_column(String, nullable=False)
    test: Mapped[str] = mapped_column(String, nullable=False)
    result_id: Mapped[int | None] = mapped_column(BigInteger)  # None: degenerate, left out
    statistic: Mapped[float | None] = mapped_column(Double)
    p_value: Mapped[float | None] = mapped_column(Double)
    p_fwe: Mapped[float | None] = mapped_column(Double)


class ImageScore(Base):
    """How one image of a layer sits among the concept centroids of that layer.

    The centroid of each concept is the mean of its images' vectors, the image's own left out
    of its concept's centroid. ``correct``: the most similar centroid is its own concept's;
    ``margin``: similarity to its own centroid minus the best similarity to another;
    ``rank``: its own concept's rank among all centroids (1 = most similar).
    """

    __tablename__ = "image_scores"

    space: Mapped[str] = mapped_column(String, primary_key=True)
    similarity: Mapped[str] = mapped_column(String, primary_key=True)  # pearson|cosine
    stimulus: Mapped[str] = mapped_column(String, primary_key=True, index=True)
    image_id: Mapped[int] = mapped_column(ID, nullable=False)
    concept: Mapped[str] = mapped_column(String, nullable=False)
    space_sha256: Mapped[str | None] = mapped_column(String)
    n_concepts: Mapped[int] = mapped_column(Integer, nullable=False)  # centroids compared
    n_images: Mapped[int] = mapped_column(Integer, nullable=False)  # of its own concept
    nearest_concept: Mapped[str] = mapped_column(String, nullable=False)
    correct: Mapped[bool] = mapped_column(Boolean, nullable=False)
    margin: Mapped[float] = mapped_column(Double, nullable=False)
    rank: Mapped[int] = mapped_column(Integer, nullable=False)
    own_similarity: Mapped[float] = mapped_column(Double, nullable=False)
    analysis_id: Mapped[int | None] = mapped_column(ID)
    created_at: Mapped[datetime] = _created()


class WarehouseSetting(Base):
    """A setting of the warehouse every process must agree on (e.g. where its vectors live)."""

    __tablename__ = "warehouse_settings"

    key: Mapped[str] = mapped_column(String, primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)
    updated_at: Mapped[datetime] = _created()


Index("ix_results_measure_spaces", Result.measure, Result.space_a, Result.space_b)
Index("ix_results_diff_results", ResultDiff.first_result_id, ResultDiff.second_result_id)
Index("ix_results_recovery_spaces", ResultRecovery.space_a, ResultRecovery.space_b)
