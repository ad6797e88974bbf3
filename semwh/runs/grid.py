"""Grids of layers and peak layers: one sweep family with a max-statistic test per test.

A grid compares every space of side A with every space of side B (every layer of a vision
model with every layer of a language model, say); a peak-layer test is the one-column grid
of a model's layers against one target. Every cell is an ordinary stored result of its test
(RSA, 2 vs 2, CKA, mutual k-NN or regression 2 vs 2), computed by the runner every family
shares (:mod:`semwh.runs.runner`: reuse, batched saves, progress, the Ray backend), and the
cells form one sweep family (Benjamini-Hochberg FDR over all of them, as any sweep).
On top, each test gets the max-statistic null over its cells
(:func:`semwh.analyze.maxstat.max_statistic`): all cells use the *same* concepts (those every
space of the grid shares) and the *same* seed, so permutation k relabels the target concepts
identically in every cell, and the maximum over cells of each permutation is the null of the
best cell. A peak-layer test adds a concept-bootstrap interval of the peak's relative depth
(each measure's ``resampled``: the same resamples for every layer).
The grid, its null maxima and every cell's family-wise p are stored in ``grids`` and
``grid_cells`` (view ``grid_results``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from semwh.analyze import MIN_CONCEPTS
from semwh.analyze.maxstat import PeakDepth, max_statistic, peak_depth
from semwh.errors import ConfigError, DegenerateInputError, NotFoundError
from semwh.progress import Progress, check_progress
from semwh.runs import families, result_rows
from semwh.runs.comparison import concept_bootstrap_values, plan_comparison
from semwh.runs.options import check_choice, check_count
from semwh.runs.provenance import canonical_json, concepts_sha256, derive_seed, draw_seed
from semwh.runs.records import ComparisonSpec
from semwh.runs.runner import (
    FamilyOptions,
    Mapper,
    Seeding,
    Skipped,
    check_neighbours,
    check_targets,
    family_options,
    run_family,
)
from semwh.validate import check_level
from semwh.vectors import LAYER_KINDS, SpaceVectors, layer_spaces, load_space
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import Grid, GridCell, Space

#: What a family of cells can be: a grid, or a peak-layer test (one column).
KINDS = ("grid", "peak")

#: The label of a grid side given as several spaces (a model side is labelled by its name).
SPACES = "spaces"


@dataclass
class GridResult:
    """What a grid or peak-layer test stored.

    Attributes:
        sweep_id: The sweep family of the cells.
        grids: One stored ``grids`` row per test.
        cells: The ``grid_cells`` rows of each grid, by grid id, in row-major order.
        computed: Cells computed (the others were found stored).
        skipped: Degenerate cells left out of the family.
        reused: True when the identical grid was already stored and is returned.
    """

    sweep_id: int
    grids: list[Grid]
    cells: dict[int, list[GridCell]]
    computed: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    reused: bool = False


def resolve_side(session: Session, side: str | Sequence[str]) -> tuple[str, list[Space]]:
    """A side of a grid: a model (vision or text, its layer spaces in depth order) or spaces.

    Raises:
        NotFoundError: An unknown model or space.
    """
    names = [side] if isinstance(side, str) else list(side)
    if len(names) == 1 and "," in names[0]:
        names = [n.strip() for n in names[0].split(",") if n.strip()]
    if len(names) == 1:
        layers = layer_spaces(session, names[0], LAYER_KINDS)
        if layers:
            return names[0], layers
    spaces: list[Space] = []
    for name in names:
        space = session.scalar(select(Space).where(Space.name == name))
        if space is None:
            raise NotFoundError(
                f"{name!r} is neither a model with layer spaces nor a space: see `semwh sql "
                '"SELECT DISTINCT model FROM spaces"` or run `semwh extract` / `semwh embed`'
            )
        spaces.append(space)
    if not spaces:
        raise ConfigError("a grid side needs a model or at least one space")
    return SPACES if len(spaces) > 1 else spaces[0].name, spaces


def common_concepts(loaded: Sequence[SpaceVectors]) -> list[str]:
    """The concepts (stimuli at the image level) every space of a grid has, sorted (at
    least four).

    Raises:
        DegenerateInputError: Fewer than four.
    """
    shared = set(loaded[0].concept_ids)
    for space in loaded[1:]:
        shared &= set(space.concept_ids)
    if len(shared) < MIN_CONCEPTS:
        what = "stimuli" if loaded[0].level == "image" else "concepts"
        raise DegenerateInputError(
            f"the {len(loaded)} spaces of the grid share {len(shared)} {what}; a grid needs "
            f"at least {MIN_CONCEPTS} {what} that every space has"
        )
    return sorted(shared)


@dataclass(frozen=True)
class GridOptions(FamilyOptions):
    """Everything a grid or peak-layer test does, apart from its two sides (checked when made).

    The options of every family (:class:`semwh.runs.runner.FamilyOptions`: tests,
    permutations, seed, the tests' settings, device, force); every test gets its own
    max-statistic test, which needs permutations (at least 1). Also:

    Attributes:
        kind: ``grid`` or ``peak`` (a one-column grid with the peak's depth interval).
        bootstrap: Concept resamples for the peak's relative-depth interval (peak only;
            :func:`peak_layer` defaults to 1000).
        level: Confidence level of that interval.
    """

    kind: str = "grid"
    bootstrap: int = 0
    level: float = 0.95

    family = "grid"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.permutations < 1:
            raise ConfigError("a grid's max-statistic test needs permutations (--permutations N)")
        check_choice(self.kind, KINDS, "grid kind")
        object.__setattr__(self, "bootstrap", check_count(self.bootstrap, "bootstrap resamples"))
        if self.kind == "grid" and self.bootstrap:
            raise ConfigError(
                f"bootstrap {self.bootstrap}: a grid's cells have no bootstrap interval (a "
                "peak's bootstrap is its depth interval); for an interval per layer run "
                "`semwh analyze sweep --bootstrap N`"
            )
        object.__setattr__(self, "level", check_level(self.level, "level"))

    def params(self) -> dict[str, Any]:
        """The options in the grid's recorded parameters (and identity)."""
        params: dict[str, Any] = {
            "kind": self.kind,
            "tests": list(self.tests),
            "similarity": self.similarity,
            "method": self.method,
            "distance": self.distance,
            "tie_tol": float(self.tie_tol),
            "permutations": self.permutations,
            "bootstrap": self.bootstrap if self.kind == "peak" else 0,
            "level": self.level,
        }
        # The measures' options join the identity only when the grid runs them, so that the
        # identity of a grid of RSA and 2 vs 2 stays what it was.
        params.update(self.measure_settings())
        if self.normalise != "none":
            params["normalise"] = self.normalise
        params.update({f"items_{k}": v for k, v in self.items.params().items()})
        return params


def grid(
    wh: Warehouse,
    a: str | Sequence[str],
    b: str | Sequence[str],
    options: GridOptions | None = None,
    *,
    progress: Progress | None = None,
    mapper: Mapper = map,
    **settings: Any,
) -> GridResult:
    """Compare every space of side ``a`` with every space of side ``b``; store the family.

    Every cell is computed over the concepts every space of the grid shares, with the grid's
    seed, so permutation k relabels side B's concepts alike in every cell, whatever the test.

    Args:
        wh: The warehouse.
        a: A model (its layer spaces, vision or text) or a list of space names (rows).
        b: The same for the columns; permutations relabel side B's concepts.
        options: The grid's :class:`GridOptions` (default: its defaults).
        progress: Told the cells done (``grid`` or ``peak``), stored ones found included.
        mapper: Maps :func:`semwh.runs.comparison.run_comparison` over the cells to compute
            (``map`` runs them here; :func:`semwh.ray.sweep_mapper` gives the Ray one).
        **settings: The fields of :class:`GridOptions` as keywords (``tests=["cka"]``,
            ``permutations=100``...), replacing those of ``options``.

    Raises:
        ConfigError: No tests, no permutations, a peak test with more than one column, a
            vector measure against an RDM, or a k-NN k not below the grid's concepts.
        NotFoundError: Unknown models or spaces.
        DegenerateInputError: Fewer than four concepts common to every space, or every cell
            of a test degenerate.
    """
    check_progress(progress)
    opts = family_options(GridOptions, options, settings)
    tests = opts.test_options
    with wh.session() as session:
        label_a, rows = resolve_side(session, a)
        label_b, cols = resolve_side(session, b)
        hashes = {s.name: s.content_sha256 for s in (*rows, *cols)}
        depths = [s.relative_depth for s in rows]
    if opts.kind == "peak" and len(cols) != 1:
        raise ConfigError(f"a peak-layer test has one target, got {len(cols)} spaces")
    grid_seed = int(opts.seed) if opts.seed is not None else draw_seed()
    loaded = {name: load_space(wh, name, opts.item_level) for name in hashes}
    concept_ids = common_concepts(list(loaded.values()))
    flag = "--target" if opts.kind == "peak" else "--b"
    check_targets(tests, {c.name: loaded[c.name] for c in cols}, flag, "grid RDMs separately")
    check_neighbours(tests, len(concept_ids), f"the {len(loaded)} spaces of the grid share")
    # The same construction as every other path, over the concepts all spaces share; the
    # runner gives every cell the grid's seed.
    specs = {
        (test.test, i, j): plan_comparison(
            loaded[row.name],
            loaded[col.name],
            test,
            {row.name: hashes[row.name], col.name: hashes[col.name]},
            concept_ids=concept_ids,
            items=opts.items,
        )
        for test in tests
        for i, row in enumerate(rows)
        for j, col in enumerate(cols)
    }
    params: dict[str, Any] = {
        **opts.params(),
        "side_a": label_a,
        "side_b": label_b,
        "spaces_a": [s.name for s in rows],
        "spaces_b": [s.name for s in cols],
        "seed": grid_seed,
        "concepts_sha256": concepts_sha256(concept_ids),
    }
    with wh.session() as session:
        family = families.open_sweep(
            session,
            models=[label_a],
            word_spaces=[s.name for s in cols],
            tests=[o.test for o in tests],
            n_permutations=opts.permutations,
            seed=grid_seed,
            params=params,
        )
        sweep_id = family.sweep_id
        identity = json.loads(family.params)["identity_sha256"]
    with families.failed_on_error(wh, sweep_id):
        return _run_grid(
            wh,
            opts,
            sweep_id=sweep_id,
            identity=identity,
            params=params,
            rows=rows,
            cols=cols,
            depths=depths,
            specs=specs,
            hashes=hashes,
            progress=progress,
            mapper=mapper,
        )


def peak_layer(
    wh: Warehouse,
    model: str,
    target: str,
    options: GridOptions | None = None,
    *,
    progress: Progress | None = None,
    mapper: Mapper = map,
    **settings: Any,
) -> GridResult:
    """The peak-layer test of ``model`` (its layers) against one ``target`` space.

    The family-wise p of the peak layer comes from the max-statistic null across layers; the
    interval of its relative depth from ``bootstrap`` concept resamples (1000 unless
    ``options`` or ``settings`` say otherwise; the same resamples for every layer,
    :meth:`semwh.measures.Measure.resampled`). See :func:`grid` for the options.
    """
    if options is None:
        settings = {"bootstrap": 1000, **settings}
    opts = family_options(GridOptions, options, {**settings, "kind": "peak"})
    return grid(wh, model, [target], opts, progress=progress, mapper=mapper)


def _run_grid(
    wh: Warehouse,
    opts: GridOptions,
    *,
    sweep_id: int,
    identity: str,
    params: dict[str, Any],
    rows: Sequence[Space],
    cols: Sequence[Space],
    depths: Sequence[float | None],
    specs: dict[tuple[str, int, int], ComparisonSpec],
    hashes: dict[str, str | None],
    progress: Progress | None,
    mapper: Mapper,
) -> GridResult:
    start = time.perf_counter()
    # Every cell's null is read back at once for the max-statistic test (and the peak's
    # bootstrap values): the runner counts them before any cell runs.
    held = {"-n/--permutations": opts.permutations, "--bootstrap": params["bootstrap"]}
    ran = run_family(
        wh,
        list(specs.values()),
        total=len(specs),
        seeding=Seeding(params["seed"], per_comparison=False),
        family="grid",
        what=opts.kind,
        force=opts.force,
        progress=progress,
        mapper=mapper,
        held_values={option: len(specs) * count for option, count in held.items()},
    )
    found = dict(zip(specs, ran.outcomes, strict=True))
    skipped = ran.skipped
    members = [families.member(r) for r in ran.rows]
    statistic = {
        (result_rows.test_of(r), r.result_id): value
        for r, value in zip(ran.rows, _statistics(ran.rows), strict=True)
    }

    with wh.session() as session:
        twin = families.same_family(session, identity, members)
        if twin is not None and twin.sweep_id != sweep_id:
            stored_grids = list(
                session.scalars(
                    select(Grid).where(Grid.sweep_id == twin.sweep_id).order_by(Grid.grid_id)
                ).all()
            )
            if stored_grids:
                families.discard_sweep(session, sweep_id)
                return GridResult(
                    sweep_id=twin.sweep_id,
                    grids=stored_grids,
                    cells={g.grid_id: _cells_of(session, g.grid_id) for g in stored_grids},
                    skipped=skipped,
                    reused=True,
                )
        tested: list[tuple[str, Any, PeakDepth | None, list[Any]]] = []
        for test in opts.tests:
            keys = [(test, i, j) for i in range(len(rows)) for j in range(len(cols))]
            kept = [k for k in keys if not isinstance(found[k], Skipped)]
            if not kept:
                raise DegenerateInputError(
                    f"every {test} cell of the grid is degenerate: "
                    + "; ".join(s.reason for s in skipped[:3])
                )
            stats = [statistic[(test, found[k].result_id)] for k in kept]  # type: ignore[union-attr]
            nulls = [
                result_rows.null_values(session, test, found[k].result_id)  # type: ignore[union-attr]
                for k in kept
            ]
            outcome = max_statistic(stats, np.asarray(nulls, dtype=np.float64))
            peak = None
            if params["kind"] == "peak" and params["bootstrap"] > 0:
                peak = _peak(specs, kept, stats, depths, params)
            tested.append((test, outcome, peak, kept))
        run = result_rows.add_analysis_run(
            session,
            params["kind"],
            {**params, "sweep_id": sweep_id, "skipped": [s.to_dict() for s in skipped]},
            seed=params["seed"],
            input_hashes=hashes,
            device=opts.test_options[0].device,
            seconds=time.perf_counter() - start,
            identity=params,
        )
        families.close_sweep(
            session,
            sweep_id,
            members,
            analysis_id=run.analysis_id,
            extra_params={"skipped": [s.to_dict() for s in skipped]},
        )
        grids: list[Grid] = []
        cells: dict[int, list[GridCell]] = {}
        for test, outcome, peak, kept in tested:
            best = kept[outcome.best]
            stored_grid = Grid(
                kind=params["kind"],
                sweep_id=sweep_id,
                analysis_id=run.analysis_id,
                test=test,
                side_a=params["side_a"],
                side_b=params["side_b"],
                n_rows=len(rows),
                n_cols=len(cols),
                n_cells=len(kept),
                n_concepts=specs[best].n_distinct_concepts,
                concepts_sha256=params["concepts_sha256"],
                n_permutations=params["permutations"],
                seed=params["seed"],
                best_space_a=rows[best[1]].name,
                best_space_b=cols[best[2]].name,
                best_statistic=outcome.best_statistic,
                p_fwe_best=outcome.p_best,
                null_max=json.dumps([float(x) for x in outcome.null]),
                n_bootstrap=peak.n_bootstrap if peak is not None else 0,
                level=peak.level if peak is not None else None,
                peak_relative_depth=peak.relative_depth if peak is not None else None,
                depth_ci_low=_finite(peak.low) if peak is not None else None,
                depth_ci_high=_finite(peak.high) if peak is not None else None,
                params=canonical_json(params),
            )
            session.add(stored_grid)
            session.flush()
            p_fwe = {k: float(p) for k, p in zip(kept, outcome.p_fwe, strict=True)}
            grid_cells = []
            for i, r in enumerate(rows):
                for j, c in enumerate(cols):
                    result = found[(test, i, j)]
                    ok = not isinstance(result, Skipped)
                    grid_cell = GridCell(
                        grid_id=stored_grid.grid_id,
                        row_index=i,
                        col_index=j,
                        space_a=r.name,
                        space_b=c.name,
                        test=test,
                        result_id=result.result_id if ok else None,  # type: ignore[union-attr]
                        statistic=statistic[(test, result.result_id)] if ok else None,  # type: ignore[union-attr]
                        p_value=result.p_value if ok else None,  # type: ignore[union-attr]
                        p_fwe=p_fwe.get((test, i, j)),
                    )
                    session.add(grid_cell)
                    grid_cells.append(grid_cell)
            session.flush()
            grids.append(stored_grid)
            cells[stored_grid.grid_id] = grid_cells
        session.expunge_all()
    return GridResult(sweep_id, grids, cells, computed=ran.computed, skipped=skipped)


def _statistics(rows: Sequence[result_rows.ComparisonRow]) -> list[float]:
    """Each stored row's statistic (accuracy, rho or a measure's), read as every table reads
    it (:func:`semwh.runs.result_rows.comparison_table`)."""
    return [float(v) for v in result_rows.comparison_table(rows).column("statistic").to_pylist()]


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _peak(
    specs: dict[tuple[str, int, int], ComparisonSpec],
    kept: Sequence[tuple[str, int, int]],
    stats: Sequence[float],
    depths: Sequence[float | None],
    params: dict[str, Any],
) -> PeakDepth:
    """The bootstrap interval of the peak's relative depth: the same resamples for every layer.

    Each layer's bootstrap draws its resamples from the same seed, so column b of every
    layer's values is the same resample of the concepts.
    """
    seed = derive_seed(params["seed"], "peak-bootstrap")
    values = [concept_bootstrap_values(specs[key], params["bootstrap"], seed) for key in kept]
    layer_depths = [
        float(d) if (d := depths[i]) is not None else i / max(1, len(depths) - 1)
        for _, i, _ in kept
    ]
    return peak_depth(stats, np.asarray(values), layer_depths, level=params["level"])


def _cells_of(session: Session, grid_id: int) -> list[GridCell]:
    cells = list(
        session.scalars(
            select(GridCell)
            .where(GridCell.grid_id == grid_id)
            .order_by(GridCell.row_index, GridCell.col_index)
        ).all()
    )
    session.expunge_all()
    return cells


GRID_COLUMNS = (
    "grid_id",
    "kind",
    "sweep_id",
    "test",
    "side_a",
    "side_b",
    "n_cells",
    "n_concepts",
    "n_permutations",
    "best_space_a",
    "best_space_b",
    "best_statistic",
    "p_fwe_best",
    "peak_relative_depth",
    "depth_ci_low",
    "depth_ci_high",
)


def grid_table(result: GridResult) -> Any:
    """The stored grids of a result as a pyarrow table (one row per test)."""
    import pyarrow as pa

    return pa.Table.from_pylist(
        [{c: getattr(g, c) for c in GRID_COLUMNS} for g in result.grids],
        schema=pa.schema(
            [
                (c, pa.string())
                if c in ("kind", "test", "side_a", "side_b", "best_space_a", "best_space_b")
                else (c, pa.float64())
                if c.startswith(("best_stat", "p_", "peak_", "depth_"))
                else (c, pa.int64())
                for c in GRID_COLUMNS
            ]
        ),
    )


def grid_concepts(
    session: Session,
    load: Callable[[str], SpaceVectors],
    test: str,
    result_id: int,
    wanted_sha256: str,
) -> list[str] | None:
    """The concept set a grid computed one of its cells over, when it hashes to ``wanted``.

    A grid's cells use the concepts every space of the grid shares, which can be fewer than
    the two spaces of a cell share; whoever recomputes the cell (``semwh verify``) needs that
    set. None when no grid lists the result or the spaces' concepts no longer give the hash.
    """
    cells = session.scalars(
        select(GridCell).where(GridCell.test == test, GridCell.result_id == result_id)
    ).all()
    for cell in cells:
        row = session.get(Grid, cell.grid_id)
        if row is None:
            continue
        params = json.loads(row.params)
        try:
            loaded = [load(name) for name in (*params["spaces_a"], *params["spaces_b"])]
        except (NotFoundError, KeyError):
            continue
        shared = set(loaded[0].concept_ids)
        for space in loaded[1:]:
            shared &= set(space.concept_ids)
        concept_ids = sorted(shared)
        if concepts_sha256(concept_ids) == wanted_sha256:
            return concept_ids
    return None
