"""Grids of layers and peak layers: one sweep family with a max-statistic test per test.

A grid compares every space of side A with every space of side B (every layer of a vision
model with every layer of a language model, say); a peak-layer test is the one-column grid
of a model's layers against one target. Every cell is an ordinary stored RSA or 2 vs 2 result,
and the cells form one sweep family (Benjamini-Hochberg FDR over all of them, as any sweep).
On top, each test gets the max-statistic null over its cells
(:func:`semwh.analyze.maxstat.max_statistic`): all cells use the *same* concepts (those every
space of the grid shares) and the *same* seed, so permutation k relabels the target concepts
identically in every cell, and the maximum over cells of each permutation is the null of the
best cell. A peak-layer test adds a concept-bootstrap interval of the peak's relative depth.
The grid, its null maxima and every cell's family-wise p are stored in ``grids`` and
``grid_cells`` (view ``grid_results``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from semwh.analyze import (
    MIN_CONCEPTS,
    TIE_TOL,
)
from semwh.analyze.maxstat import PeakDepth, max_statistic, peak_depth
from semwh.errors import ConfigError, DegenerateInputError, NotFoundError
from semwh.runs import families, store
from semwh.runs.comparison import (
    concept_bootstrap_values,
    lookup_in,
    plan_comparison,
    run_comparison,
    save_in,
)
from semwh.runs.options import TESTS, ComparisonOptions, check_choice, check_seed
from semwh.runs.plan import check_specs
from semwh.runs.provenance import canonical_json, concepts_sha256, derive_seed, draw_seed
from semwh.runs.records import ComparisonSpec
from semwh.runs.sweep import Skipped
from semwh.vectors import LAYER_KINDS, SpaceVectors, layer_spaces, load_space
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import Grid, GridCell, Space

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
    """The concepts every space of a grid has, sorted (at least four).

    Raises:
        DegenerateInputError: Fewer than four.
    """
    shared = set(loaded[0].wnids)
    for space in loaded[1:]:
        shared &= set(space.wnids)
    if len(shared) < MIN_CONCEPTS:
        raise DegenerateInputError(
            f"the {len(loaded)} spaces of the grid share {len(shared)} concepts; a grid needs "
            f"at least {MIN_CONCEPTS} concepts that every space has"
        )
    return sorted(shared)


def grid(
    wh: Warehouse,
    a: str | Sequence[str],
    b: str | Sequence[str],
    *,
    tests: Sequence[str] = ("2v2", "rsa"),
    permutations: int = 1000,
    seed: int | None = None,
    similarity: str = "pearson",
    method: str = "spearman",
    distance: str = "pearson",
    tie_tol: float = TIE_TOL,
    device: str = "cpu",
    force: bool = False,
    kind: str = "grid",
    bootstrap: int = 0,
    level: float = 0.95,
    normalise: str = "none",
) -> GridResult:
    """Compare every space of side ``a`` with every space of side ``b``; store the family.

    Args:
        wh: The warehouse.
        a: A model (its layer spaces, vision or text) or a list of space names (rows).
        b: The same for the columns; permutations relabel side B's concepts.
        tests: Any of ``2v2`` and ``rsa``; each gets its own max-statistic test.
        permutations: Size of the permutation null (at least 1).
        seed: Seed of every cell's permutations (one stream for the whole grid); None draws.
        similarity: Concept similarity.
        method: RSA correlation of the upper triangles.
        distance: 2 vs 2 row distance.
        tie_tol: 2 vs 2 tie tolerance.
        device: ``cpu`` or ``cuda``.
        force: Recompute stored cells (new rows).
        kind: ``grid`` or ``peak`` (a one-column grid with the peak's depth interval).
        bootstrap: Concept resamples for the peak's relative-depth interval (peak only).
        level: Confidence level of that interval.
        normalise: How the subjects' matrices of an RDM side are rescaled (none, zscore,
            rank); every cell against an RDM is the mean over its subjects.

    Raises:
        ConfigError: No tests, no permutations, or a peak test with more than one column.
        NotFoundError: Unknown models or spaces.
        DegenerateInputError: Fewer than four concepts common to every space, or every cell
            of a test degenerate.
    """
    if not tests:
        raise ConfigError(f"a grid needs at least one test (choose {', '.join(TESTS)})")
    seed = check_seed(seed)
    if permutations < 1:
        raise ConfigError("a grid's max-statistic test needs permutations (--permutations N)")
    options = [
        ComparisonOptions.make(
            check_choice(test, TESTS, "test"),
            similarity=similarity,
            method=method,
            distance=distance,
            permutations=permutations,
            seed=None,
            device=device,
            tie_tol=tie_tol,
            normalise=normalise,
        )
        for test in dict.fromkeys(tests)
    ]
    with wh.session() as session:
        label_a, rows = resolve_side(session, a)
        label_b, cols = resolve_side(session, b)
        hashes = {s.name: s.content_sha256 for s in (*rows, *cols)}
        depths = [s.relative_depth for s in rows]
    if kind == "peak" and len(cols) != 1:
        raise ConfigError(f"a peak-layer test has one target, got {len(cols)} spaces")
    grid_seed = int(seed) if seed is not None else draw_seed()
    loaded = {name: load_space(wh, name) for name in hashes}
    wnids = common_concepts(list(loaded.values()))
    concepts_hash = concepts_sha256(wnids)

    def spec(test_opts: ComparisonOptions, row: Space, col: Space) -> ComparisonSpec:
        # The same construction as every other path, over the concepts all spaces share.
        return plan_comparison(
            loaded[row.name],
            loaded[col.name],
            replace(test_opts, seed=grid_seed),
            {row.name: hashes[row.name], col.name: hashes[col.name]},
            wnids=wnids,
        )

    params: dict[str, Any] = {
        "kind": kind,
        "side_a": label_a,
        "side_b": label_b,
        "spaces_a": [s.name for s in rows],
        "spaces_b": [s.name for s in cols],
        "tests": [o.test for o in options],
        "similarity": similarity,
        "method": method,
        "distance": distance,
        "tie_tol": float(tie_tol),
        "permutations": permutations,
        "seed": grid_seed,
        "concepts_sha256": concepts_hash,
        "bootstrap": bootstrap if kind == "peak" else 0,
        "level": level,
    }
    if normalise != "none":
        params["normalise"] = normalise
    with wh.session() as session:
        family = families.open_sweep(
            session,
            models=[label_a],
            word_spaces=[s.name for s in cols],
            tests=[o.test for o in options],
            n_permutations=permutations,
            seed=grid_seed,
            params=params,
        )
        sweep_id = family.sweep_id
        identity = json.loads(family.params)["identity_sha256"]
    try:
        return _run_grid(
            wh, sweep_id, identity, params, options, rows, cols, depths, spec, hashes, force
        )
    except BaseException:
        with wh.session() as session:
            families.fail_sweep(session, sweep_id)
        raise


def peak_layer(
    wh: Warehouse,
    model: str,
    target: str,
    *,
    tests: Sequence[str] = ("2v2", "rsa"),
    permutations: int = 1000,
    bootstrap: int = 1000,
    seed: int | None = None,
    **options: Any,
) -> GridResult:
    """The peak-layer test of ``model`` (its layers) against one ``target`` space.

    The family-wise p of the peak layer comes from the max-statistic null across layers; the
    interval of its relative depth from ``bootstrap`` concept resamples (the same resample for
    every layer). See :func:`grid` for the options.
    """
    return grid(
        wh,
        model,
        [target],
        tests=tests,
        permutations=permutations,
        seed=seed,
        kind="peak",
        bootstrap=bootstrap,
        **options,
    )


def _run_grid(
    wh: Warehouse,
    sweep_id: int,
    identity: str,
    params: dict[str, Any],
    options: Sequence[ComparisonOptions],
    rows: Sequence[Space],
    cols: Sequence[Space],
    depths: Sequence[float | None],
    spec: Any,
    hashes: dict[str, str | None],
    force: bool,
) -> GridResult:
    start = time.perf_counter()
    found: dict[tuple[str, int, int], store.ComparisonRow | Skipped] = {}
    computed = 0
    specs: dict[tuple[str, int, int], ComparisonSpec] = {}
    for opts in options:
        for i, row in enumerate(rows):
            for j, col in enumerate(cols):
                specs[(opts.test, i, j)] = spec(opts, row, col)
    # Refused before any cell runs: the largest cell, and every cell's null read back at once
    # for the max-statistic test (and the peak's bootstrap values).
    held = {"-n/--permutations": params["permutations"], "--bootstrap": params["bootstrap"]}
    held = {option: len(specs) * count for option, count in held.items()}
    check_specs(list(specs.values()), wh.tmp_root, family="grid", held_values=held)
    with wh.session() as session:
        for key, cell in specs.items():
            stored = None if force else lookup_in(session, cell)
            if stored is not None:
                found[key] = stored
    for key, cell in specs.items():
        if key in found:
            continue
        try:
            record = run_comparison(cell)
        except DegenerateInputError as exc:
            found[key] = Skipped(cell.options.test, cell.space_a, cell.space_b, str(exc))
            continue
        with wh.session() as session:
            found[key] = save_in(session, record)
        computed += 1
    skipped = [v for v in found.values() if isinstance(v, Skipped)]
    members = [families.member(r) for r in found.values() if not isinstance(r, Skipped)]

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
        tested: list[tuple[ComparisonOptions, Any, PeakDepth | None, list[Any]]] = []
        for opts in options:
            keys = [(opts.test, i, j) for i in range(len(rows)) for j in range(len(cols))]
            kept = [k for k in keys if not isinstance(found[k], Skipped)]
            if not kept:
                raise DegenerateInputError(
                    f"every {opts.test} cell of the grid is degenerate: "
                    + "; ".join(s.reason for s in skipped[:3])
                )
            stats = [_statistic(found[k]) for k in kept]
            nulls = [
                store.null_values(session, opts.test, found[k].result_id)  # type: ignore[union-attr]
                for k in kept
            ]
            outcome = max_statistic(stats, np.asarray(nulls, dtype=np.float64))
            peak = None
            if params["kind"] == "peak" and params["bootstrap"] > 0:
                peak = _peak(specs, kept, stats, depths, params)
            tested.append((opts, outcome, peak, kept))
        run = store.add_analysis_run(
            session,
            params["kind"],
            {**params, "sweep_id": sweep_id, "skipped": [s.to_dict() for s in skipped]},
            seed=params["seed"],
            input_hashes=hashes,
            device=options[0].device,
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
        for opts, outcome, peak, kept in tested:
            best = kept[outcome.best]
            stored_grid = Grid(
                kind=params["kind"],
                sweep_id=sweep_id,
                analysis_id=run.analysis_id,
                test=opts.test,
                side_a=params["side_a"],
                side_b=params["side_b"],
                n_rows=len(rows),
                n_cols=len(cols),
                n_cells=len(kept),
                n_concepts=len(specs[best].wnids),
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
                    result = found[(opts.test, i, j)]
                    ok = not isinstance(result, Skipped)
                    grid_cell = GridCell(
                        grid_id=stored_grid.grid_id,
                        row_index=i,
                        col_index=j,
                        space_a=r.name,
                        space_b=c.name,
                        test=opts.test,
                        result_id=result.result_id if ok else None,  # type: ignore[union-attr]
                        statistic=_statistic(result) if ok else None,
                        p_value=result.p_value if ok else None,  # type: ignore[union-attr]
                        p_fwe=p_fwe.get((opts.test, i, j)),
                    )
                    session.add(grid_cell)
                    grid_cells.append(grid_cell)
            session.flush()
            grids.append(stored_grid)
            cells[stored_grid.grid_id] = grid_cells
        session.expunge_all()
    return GridResult(sweep_id, grids, cells, computed=computed, skipped=skipped)


def _statistic(row: Any) -> float:
    return float(row.accuracy if hasattr(row, "accuracy") else row.rho)


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
        shared = set(loaded[0].wnids)
        for space in loaded[1:]:
            shared &= set(space.wnids)
        wnids = sorted(shared)
        if concepts_sha256(wnids) == wanted_sha256:
            return wnids
    return None
