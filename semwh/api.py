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
from semwh.warehouse.migrate import init_warehouse, open_warehouse
from semwh.warehouse.models import Result
from semwh.warehouse.readonly import QueryResult, run_sql

if TYPE_CHECKING:
    from semwh.extract import ExtractionSummary
    from semwh.extract.plan import ExtractionPlan
    from semwh.ingest import ImageIngestReport, WordIngestReport
    from semwh.progress import Progress
    from semwh.results.report import ReportInfo
    from semwh.runs.grid import GridOptions, GridResult
    from semwh.runs.sweep import SweepOptions, SweepResult
    from semwh.runs.verify import VerifyReport
    from semwh.vectors.store import SpaceVectors

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

    def curves(self, word_space: str | None = None, sweep_id: int | None = None) -> QueryResult:
        """Layer curves: per layer space and word space, the current results (``layer_curves``)."""
        return self.query("layer_curves", {"word_space": word_space, "sweep_id": sweep_id})

    def spaces(self, kind: str | None = None) -> QueryResult:
        """The registered spaces (name, kind, model, layer, depth, dim, concepts)."""
        if kind is None:
            return self.sql("SELECT * FROM spaces ORDER BY name")
        return self.sql("SELECT * FROM spaces WHERE kind = $kind ORDER BY name", {"kind": kind})

    def space(self, name: str) -> SpaceVectors:
        """A space's concept vectors: ``.concept_ids`` (sorted) and ``.matrix`` (n x d, float64)."""
        from semwh.vectors import load_space

        return load_space(self.warehouse, name)

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

    def ingest_images(
        self, folder: PathLike | None = None, manifest: PathLike | None = None, **options: Any
    ) -> ImageIngestReport:
        """Register image files (``semwh ingest images``): a folder or a CSV manifest."""
        from semwh.ingest import ingest_images

        return ingest_images(self.warehouse, folder, manifest, **options)

    def ingest_words(
        self, name: str, source: PathLike | None = None, fmt: str | None = None, **options: Any
    ) -> WordIngestReport:
        """Store word vectors as the word space ``name`` (``semwh ingest words``)."""
        from semwh.ingest import ingest_words

        return ingest_words(self.warehouse, name, source, fmt, **options)

    def extract(
        self,
        model: str,
        *,
        dry_run: bool = False,
        progress: Progress | None = None,
        on_plan: Callable[[ExtractionPlan], None] | None = None,
        shard_pause: float = 0.0,
        **options: Any,
    ) -> ExtractionSummary:
        """Pooled activations of a model's probe layers for every image (``semwh extract``).

        ``options`` are the fields of :class:`semwh.extract.ExtractionOptions` (weights,
        layers, pooling, batch_size, device, ...); ``dry_run`` plans and registers nothing;
        ``progress`` is told the images done (:mod:`semwh.progress`); ``on_plan`` gets the
        plan before anything runs; ``shard_pause`` sleeps after each registered shard.
        """
        from semwh.extract import ExtractionOptions, run_extraction

        request = ExtractionOptions(model, **options)
        return run_extraction(
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
        from sqlalchemy import select

        from semwh.errors import InputError
        from semwh.ingest.concepts import check_concept_id
        from semwh.names import check_name
        from semwh.runs.options import check_choice
        from semwh.vectors import save_space
        from semwh.vectors.store import real_matrix
        from semwh.warehouse.models import Concept

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
            known = set(session.scalars(select(Concept.concept)))
        for i, value in enumerate(ids):
            check_concept_id(value, known, f"space {name!r}, row {i}")
        save_space(self.warehouse, name, kind, ids, vectors, replace=replace)
        return name

    def compare(self, space_a: str, space_b: str, test: str = "rsa", **options: Any) -> dict:
        """Compare two spaces and store the result (``semwh analyze rsa|2v2|cka|knn|reg2v2``).

        ``options`` are those of :func:`semwh.runs.compare` for rsa and 2v2 (permutations,
        seed, similarity, method, distance, bootstrap, tie_tol, device, force) and of
        :func:`semwh.runs.measures.measure` for cka, knn and reg2v2 (estimator, k, distance,
        penalties, permutations, seed, force); any other registered measure takes permutations,
        seed, bootstrap, device, force and its own options by name. Returns the stored row as
        a dict; its
        ``result_id`` finds it in ``results`` (and in ``results_rsa``, ``results_2v2`` or
        ``results_measures``).
        """
        from semwh.runs import compare
        from semwh.runs.measures import compare_measure, measure
        from semwh.runs.options import MEASURES, TESTS

        if test in MEASURES:
            return _row_dict(measure(self.warehouse, space_a, space_b, test, **options))
        if test in TESTS:
            return _row_dict(compare(self.warehouse, space_a, space_b, test, **options))
        common = {
            key: options.pop(key)
            for key in ("permutations", "seed", "bootstrap", "device", "force")
            if key in options
        }
        row = compare_measure(self.warehouse, space_a, space_b, test, options=options, **common)
        return _row_dict(row)

    def sweep(
        self,
        models: Sequence[str],
        word_spaces: Sequence[str],
        options: SweepOptions | None = None,
        **settings: Any,
    ) -> SweepResult:
        """Every layer of ``models`` against every word space, stored as one sweep family.

        ``models`` and ``word_spaces`` are a name or a list of names (one string is one name).

        ``options`` is a :class:`semwh.runs.sweep.SweepOptions`; ``settings`` are its fields
        as keywords (tests, permutations, seed, recovery, include_random, ...), and
        ``progress`` and ``mapper`` as for :func:`semwh.runs.sweep.sweep`. The returned
        ``sweep_id`` selects the family in ``sweep_results`` and in :meth:`curves`.
        """
        from semwh.names import name_list
        from semwh.runs.sweep import sweep

        if "tests" in settings:
            settings["tests"] = name_list(settings["tests"], "tests")
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
        **settings: Any,
    ) -> GridResult:
        """Every layer (or listed space) of ``a`` against every one of ``b``, with a
        max-statistic test of the best cell per test (``semwh analyze grid``).

        ``options`` is a :class:`semwh.runs.grid.GridOptions`; ``settings`` are its fields
        as keywords (tests, permutations, seed, k, ...), and ``progress`` and ``mapper`` as
        for :func:`semwh.runs.grid.grid`. The cells are in the view ``grid_results``.
        """
        from semwh.names import name_list
        from semwh.runs.grid import grid

        if "tests" in settings:
            settings["tests"] = name_list(settings["tests"], "tests")
        return grid(self.warehouse, a, b, options, **settings)

    def peak(
        self, model: str, target: str, options: GridOptions | None = None, **settings: Any
    ) -> GridResult:
        """The peak layer of ``model`` against ``target``: its family-wise p and the interval
        of its relative depth (``semwh analyze peak``); options as for :meth:`grid`, with
        ``bootstrap`` resamples (default 1000)."""
        from semwh.names import name_list
        from semwh.runs.grid import peak_layer

        if "tests" in settings:
            settings["tests"] = name_list(settings["tests"], "tests")
        return peak_layer(self.warehouse, model, target, options, **settings)

    def verify(self, *, sweep_id: int | None = None, result: str | None = None) -> VerifyReport:
        """Recompute stored results and check their files (``semwh verify``); all by default."""
        from semwh.runs.verify import verify

        every = sweep_id is None and result is None
        return verify(self.warehouse, sweep_id=sweep_id, result=result, every=every)

    def report(
        self,
        out: PathLike,
        *,
        alpha: float = 0.05,
        word_space: str | None = None,
        force: bool = False,
    ) -> ReportInfo:
        """Write figures and ``report.html`` into ``out`` (outside the warehouse)."""
        from semwh.results.report import build_report

        return build_report(
            self.warehouse, Path(out), alpha=alpha, word_space=word_space, force=force
        )


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
        if not wh.exists():
            init_warehouse(wh)
    wh = open_warehouse(path, db_url, vectors=vectors)
    return SemanticWarehouse(wh, allow_read)


def _row_dict(row: Any) -> dict:
    """A stored ORM row's columns as a plain dict (detached from its session); a result of
    ``results`` has the columns of its view (``results_rsa``, ...) first."""
    if isinstance(row, Result):
        return row.record()
    return {column.key: getattr(row, column.key) for column in row.__table__.columns}
