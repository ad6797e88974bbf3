"""The report: figures (PNG and SVG) and one self-contained HTML page, from named queries only.

>>> info = build_report(wh, Path("report"))          # doctest: +SKIP
>>> info.html                                         # doctest: +SKIP
PosixPath('report/report.html')
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from semwh.errors import ConfigError, NotFoundError
from semwh.results.named import load_query, run_named
from semwh.results.output import atomic_output, check_output_folder, format_cell
from semwh.results.report.figures import (
    Family,
    Figure,
    curve_figures,
    grid_figures,
    heatmap_figure,
    measure_figures,
)
from semwh.results.report.intervals import sweep_families, with_intervals
from semwh.results.report.structure import (
    LAYER_MEASURES,
    layers_figure,
    mds_figure,
    rdm_figure,
)
from semwh.validate import check_level
from semwh.version import __version__
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.readonly import sandbox_connection

Row = dict[str, Any]

CURVE_COLUMNS = (
    "model",
    "layer",
    "relative_depth",
    "word_space",
    "accuracy_2v2",
    "p_fdr_2v2",
    "rho_rsa",
    "p_fdr_rsa",
    "n_concepts",
    "n_permutations",
    "ci_low_2v2",
    "ci_high_2v2",
    "ci_low_rsa",
    "ci_high_rsa",
    "sweep_id",
)


MEASURE_COLUMNS = (
    "model",
    "layer",
    "relative_depth",
    "word_space",
    "measure",
    "variant",
    "statistic",
    "p_fdr",
    "n_concepts",
    "n_permutations",
)
PEAK_COLUMNS = (
    "model",
    "target",
    "test",
    "n_layers",
    "peak_layer",
    "statistic",
    "p_fwe",
    "peak_relative_depth",
    "depth_ci_low",
    "depth_ci_high",
    "n_permutations",
    "n_bootstrap",
    "item_level",
)
GRID_BEST_COLUMNS = (
    "grid_id",
    "test",
    "side_a",
    "side_b",
    "space_a",
    "space_b",
    "statistic",
    "p_value",
    "p_fdr",
    "p_fwe",
    "n_concepts",
    "n_permutations",
    "item_level",
)


@dataclass(frozen=True)
class ReportData:
    """The rows of the named queries a report shows."""

    curves: list[Row]
    peaks: list[Row]
    first_significant: list[Row]
    recovery: list[Row]
    measures: list[Row] = field(default_factory=list)
    ceilings: list[Row] = field(default_factory=list)
    heatmaps: dict[tuple[str, str], list[Row]] = field(default_factory=dict)
    grid_cells: list[Row] = field(default_factory=list)
    peak_inference: list[Row] = field(default_factory=list)
    #: Layer curves at the image level (items: stimuli), kept apart from the concept level's.
    image_curves: list[Row] = field(default_factory=list)
    #: The FDR family (sweep) of every sweep_id the rows show.
    families: dict[int, Family] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportInfo:
    """What ``build_report`` wrote."""

    html: Path
    #: Every figure file: PNG, PDF, SVG and the CSV of its numbers.
    figures: list[Path]
    n_curve_rows: int


def report_data(
    wh: Warehouse,
    *,
    alpha: float = 0.05,
    word_space: str | None = None,
    measures: Sequence[str] = (),
    heatmaps: Sequence[str] = (),
    sweep_ids: Sequence[int] = (),
) -> ReportData:
    """Run the named queries behind the report in one sandbox connection.

    The curves are the current ones (the layer_curves rule), or with ``sweep_ids`` the rows
    of those sweeps; every curve row carries its results' stored bootstrap intervals
    (:func:`semwh.results.report.intervals.with_intervals`).

    ``measures`` (registered measures: 2v2, rsa, cka, knn, reg2v2, plugins) adds the rows of
    the ``measure_curves`` query of each, drawn as panels of their own, and the
    ``noise_ceilings`` rows. ``heatmaps`` names spaces (``SPACE`` or ``SPACE:METRIC``, metric
    pearson, spearman or cosine) whose ``space_vectors`` rows are drawn as similarity
    heatmaps in WordNet order.

    Raises:
        ConfigError: ``alpha`` is not a number strictly between 0 and 1, an unknown measure.
    """
    alpha = check_level(alpha, "alpha")
    from semwh import measures as registry

    unknown = [m for m in measures if m not in registry.names()]
    if unknown:
        raise ConfigError(
            f"unknown measure {unknown[0]!r} for the report (choose {', '.join(registry.names())})"
        )
    heatmap_keys = check_heatmaps(wh, heatmaps)
    ws = {"word_space": word_space}
    # The SQL the report runs: on a server registry, the tables it reads are copied.
    statements = [load_query(name).sql for name in REPORT_QUERIES] + [_SCHEMES_SQL]
    with sandbox_connection(wh, statements=statements) as conn:

        def rows(name: str, params: dict[str, Any]) -> list[Row]:
            if sweep_ids and name in ("layer_curves", "measure_curves"):
                return [
                    row
                    for sweep_id in dict.fromkeys(sweep_ids)
                    for row in run_named(
                        conn, load_query(name), {**params, "sweep_id": int(sweep_id)}
                    ).table.to_pylist()
                ]
            return run_named(conn, load_query(name), params).table.to_pylist()

        image_curves = with_intervals(conn, rows("layer_curves", {**ws, "level": "image"}))
        if image_curves:
            # Each row's permutation scheme, as its sweep's results record it.
            schemes: dict[tuple[Any, ...], set[str]] = {}
            for key in conn.execute(_SCHEMES_SQL).fetchall():
                schemes.setdefault(tuple(key[:3]), set()).add(str(key[3]))
            for row in image_curves:
                space = row.get("space") or f"{row['model']}/{row['layer']}"
                found = schemes.get((row.get("sweep_id"), space, row.get("word_space")), set())
                row["permute"] = ", ".join(sorted(found))
        curves = with_intervals(conn, rows("layer_curves", ws))
        recovery = rows("recovery_by_layer", ws)
        measure_rows = with_intervals(
            conn,
            [
                row
                for measure in dict.fromkeys(measures)
                for row in rows("measure_curves", {**ws, "measure": measure})
            ],
        )
        return ReportData(
            curves=curves,
            peaks=rows("peak_layer", ws),
            first_significant=rows("first_significant_depth", {**ws, "alpha": alpha}),
            recovery=recovery,
            measures=measure_rows,
            ceilings=rows("noise_ceilings", {}) if measures else [],
            heatmaps={key: rows("space_vectors", {"space": key[0]}) for key in heatmap_keys},
            grid_cells=rows("grid_cells", {"alpha": alpha}),
            peak_inference=rows("peak_inference", {}),
            image_curves=image_curves,
            families=sweep_families(conn, [*curves, *image_curves, *recovery, *measure_rows]),
        )


#: The named queries a report runs.
REPORT_QUERIES = (
    "layer_curves",
    "peak_layer",
    "first_significant_depth",
    "recovery_by_layer",
    "measure_curves",
    "noise_ceilings",
    "space_vectors",
    "grid_cells",
    "peak_inference",
)
# The permutation scheme of each image-level curve's sweep.
_SCHEMES_SQL = (
    "SELECT m.sweep_id, r.space_a, r.space_b, r.permute FROM sweep_members AS m "
    "JOIN results AS r ON r.result_id = m.result_id WHERE r.level = 'image'"
)


def heatmap_key(text: str) -> tuple[str, str]:
    """``SPACE`` or ``SPACE:METRIC`` as (space, metric); the metric defaults to pearson."""
    from semwh.analyze.similarity import SIMILARITY_METRICS

    space, sep, metric = text.rpartition(":")
    if sep and metric in SIMILARITY_METRICS:
        return space, metric
    return text, "pearson"


def check_heatmaps(wh: Warehouse, heatmaps: Sequence[str]) -> list[tuple[str, str]]:
    """The (space, metric) of each heatmap named, checked against the warehouse's spaces.

    Raises:
        ConfigError: ``SPACE:METRIC`` with an unknown metric.
        NotFoundError: An unknown space.
    """
    from semwh.analyze.similarity import SIMILARITY_METRICS
    from semwh.vectors.store import get_space

    keys = list(dict.fromkeys(heatmap_key(text) for text in heatmaps))
    with wh.session() as session:
        for space, _ in keys:
            try:
                get_space(session, space)
            except NotFoundError as exc:
                base, sep, metric = space.rpartition(":")
                if sep and base:
                    try:
                        get_space(session, base)
                    except NotFoundError:
                        pass
                    else:
                        raise ConfigError(
                            f"heatmap {space!r}: unknown similarity metric {metric!r} "
                            f"(choose {', '.join(SIMILARITY_METRICS)})"
                        ) from None
                raise NotFoundError(f"heatmap {space!r}: {exc}") from None
    return keys


def _table(rows: list[Row], columns: tuple[str, ...] | None = None) -> str:
    if not rows:
        return "<p class='empty'>no rows</p>"
    cols = list(columns or rows[0].keys())
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(format_cell(r.get(c)))}</td>" for c in cols) + "</tr>"
        for r in rows
    )
    # A wide table scrolls inside its own box, never the page.
    return (
        f"<div class='table-wrap'><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table></div>"
    )


def _figure_html(fig: Figure) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    files = ", ".join(
        f"<code>{html.escape(p.name)}</code>" for p in (fig.pdf_path, fig.svg_path, fig.csv_path)
    )
    # Shown at 115 CSS px per inch of the figure (the PNG holds 300 per inch), never wider
    # than the page.
    width = round(int.from_bytes(fig.png[16:20], "big") * 115 / 300)
    return (
        f"<figure id='fig-{html.escape(fig.key)}' style='width: {width}px'>"
        f"<img alt='{html.escape(fig.title)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{html.escape(fig.caption)} <span class='files'>(files: {files})"
        "</span></figcaption></figure>"
    )


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1340px; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; }
.table-wrap { max-width: 100%; overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; white-space: nowrap; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; vertical-align: top; margin: 0.5em 1em 1em 0;
         max-width: 100%; }
img { width: 100%; height: auto; display: block; }
figcaption { font-size: 0.8em; color: #444; }
.files { color: #777; } .meta, .empty { color: #666; font-size: 0.85em; }
code { overflow-wrap: anywhere; }
"""

# Marks the page once its figures are decoded, with the widths a headless browser checks:
# the document must not be wider than the window (no sideways scroll).
_CHECK = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-figures', ok + '/' + imgs.length);
  document.body.setAttribute('data-scroll-width', document.documentElement.scrollWidth);
  document.body.setAttribute('data-inner-width', window.innerWidth);
});
"""


def render_html(data: ReportData, figures: list[Figure], *, title: str, alpha: float) -> str:
    """The report page: figures as base64 data URIs, key tables, provenance; no external files."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    families = "; ".join(f.describe() for _, f in sorted(data.families.items()))
    structure = ("rdm_", "mds_", "layers_")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='meta'>semwh {html.escape(__version__)}, {now}. Filled markers: layers "
        f"significant after Benjamini–Hochberg FDR at {alpha:g} within the family of their "
        "sweep (marker shape: the sweep; each caption names it); error bars: stored 95% "
        "bootstrap intervals where the results have them; dotted: the permutation null's "
        "95th percentile; dashed: random-weight controls; grey band: noise ceiling. Every "
        "figure is also written as PDF, SVG (editable text) and PNG (300 dpi), with its "
        "numbers as CSV."
        + (f" FDR families shown: {html.escape(families)}." if families else "")
        + "</p>",
        "<h2>Figures</h2>",
        *(_figure_html(f) for f in figures if not f.key.startswith(("grid_", *structure))),
        "<h2>Peak layer per model and word space</h2>",
        _table(data.peaks),
        f"<h2>First layer with a significant 2 vs 2 (FDR ≤ {alpha:g})</h2>",
        _table(data.first_significant),
        "<h2>Layer curves</h2>",
        _table(data.curves, CURVE_COLUMNS),
    ]
    structure_figs = [f for f in figures if f.key.startswith(structure)]
    if structure_figs:
        parts += [
            "<h2>Representational structure</h2>",
            *(_figure_html(f) for f in structure_figs),
        ]
    if data.image_curves:
        parts += [
            "<h2>Layer curves at the image level</h2>",
            "<p class='meta'>Items are stimuli; the null permutes them by the scheme in the "
            "permute column (concepts: each concept's images move together; images: every "
            "image exchangeable; within-concept: images only within their concept).</p>",
            _table(data.image_curves, (*CURVE_COLUMNS, "n_items", "permute")),
        ]
    if data.recovery:
        parts += ["<h2>1 vs 2 recovery by layer</h2>", _table(data.recovery)]
    if data.measures:
        parts += ["<h2>Measure curves</h2>", _table(data.measures, MEASURE_COLUMNS)]
    if data.peak_inference:
        parts += [
            "<h2>Peak-layer inference</h2>",
            "<p class='meta'>p_fwe: family-wise p of the peak layer from the max-statistic "
            "null across the model's layers (each permutation scores every layer with the "
            "same relabelling of the target's concepts); depth interval: concept bootstrap of "
            "the peak's relative depth.</p>",
            _table(data.peak_inference, PEAK_COLUMNS),
        ]
    grid_figs = [f for f in figures if f.key.startswith("grid_")]
    if grid_figs:
        best = [r for r in data.grid_cells if r.get("is_best")]
        parts += [
            "<h2>Layer grids</h2>",
            f"<p class='meta'>Dots: cells with family-wise p ≤ {alpha:g} from the "
            "max-statistic null over the grid's cells; frame: the best cell.</p>",
            *(_figure_html(f) for f in grid_figs),
            _table(best, GRID_BEST_COLUMNS),
        ]
    parts += [f"<script>{_CHECK}</script>", "</body></html>"]
    return "\n".join(parts)


@dataclass(frozen=True)
class FigureSet:
    """Which figures to draw besides the layer curves (always drawn from the data).

    Attributes:
        measures: Registered measures whose measure_curves rows get figures of their own.
        heatmaps: Spaces (``SPACE`` or ``SPACE:METRIC``) drawn as similarity heatmaps.
        rdms: Spaces drawn as RDMs ordered by ``order``.
        mds: Spaces drawn as a 2-D classical MDS, coloured by ``order``'s groups.
        layer_matrices: Models whose layer x layer matrix is drawn under ``layer_measure``.
        order: How RDM and MDS concepts are ordered and grouped (``auto``, ``wordnet``,
            ``lexname``, ``name``, ``concept`` or a column of the concept file).
        layer_measure: ``cka`` (linear CKA) or ``rsa``.
    """

    measures: Sequence[str] = ()
    heatmaps: Sequence[str] = ()
    rdms: Sequence[str] = ()
    mds: Sequence[str] = ()
    layer_matrices: Sequence[str] = ()
    order: str = "auto"
    layer_measure: str = "cka"


def _check_structure(wh: Warehouse, chosen: FigureSet) -> None:
    """Refuse unknown spaces, models and measures before anything is written."""
    from semwh.vectors import LAYER_KINDS, get_space, layer_spaces

    if chosen.layer_measure not in LAYER_MEASURES:
        raise ConfigError(
            f"unknown layer measure {chosen.layer_measure!r} (choose {', '.join(LAYER_MEASURES)})"
        )
    with wh.session() as session:
        for space in (*chosen.rdms, *chosen.mds):
            get_space(session, space)
        for model in chosen.layer_matrices:
            if not layer_spaces(session, model, LAYER_KINDS):
                raise NotFoundError(f"model {model!r} has no layer spaces in {wh.root}")


def draw_figures(
    wh: Warehouse,
    data: ReportData,
    out_dir: Path,
    *,
    alpha: float = 0.05,
    chosen: FigureSet = FigureSet(),
    protected: Sequence[Path] = (),
) -> list[Figure]:
    """Every figure of ``data`` and ``chosen`` written into ``out_dir`` (files replaced)."""
    figures = curve_figures(
        data.curves, data.recovery, alpha, out_dir, protected, families=data.families
    )
    figures += curve_figures(
        data.image_curves, [], alpha, out_dir, protected, level="image", families=data.families
    )
    # RSA and 2 vs 2 of the layer curves are drawn once, with their ceilings: a measure
    # figure of the same results would be a duplicate panel.
    drawn = {
        (r.get("space") or f"{r['model']}/{r['layer']}", r["word_space"], r.get("sweep_id"))
        for r in data.curves
    }
    extra = [
        r
        for r in data.measures
        if not (
            r["measure"] in ("2v2", "rsa")
            and (r.get("space"), r["word_space"], r.get("sweep_id")) in drawn
        )
    ]
    figures += measure_figures(extra, alpha, out_dir, protected, data.ceilings, data.families)
    figures += [
        heatmap_figure(found, space=space, metric=metric, out_dir=out_dir, protected=protected)
        for (space, metric), found in data.heatmaps.items()
    ]
    figures += grid_figures(data.grid_cells, alpha, out_dir, protected)
    figures += [
        rdm_figure(wh, space, out_dir, order=chosen.order, protected=protected)
        for space in dict.fromkeys(chosen.rdms)
    ]
    figures += [
        mds_figure(wh, space, out_dir, order=chosen.order, protected=protected)
        for space in dict.fromkeys(chosen.mds)
    ]
    figures += [
        layers_figure(wh, model, out_dir, measure=chosen.layer_measure, protected=protected)
        for model in dict.fromkeys(chosen.layer_matrices)
    ]
    return figures


def _gather(
    wh: Warehouse,
    *,
    alpha: float,
    word_space: str | None,
    sweep_ids: Sequence[int],
    chosen: FigureSet,
) -> ReportData:
    check_heatmaps(wh, chosen.heatmaps)
    _check_structure(wh, chosen)
    data = report_data(
        wh,
        alpha=alpha,
        word_space=word_space,
        measures=chosen.measures,
        heatmaps=chosen.heatmaps,
        sweep_ids=sweep_ids,
    )
    for (space, _), found in data.heatmaps.items():
        if not found:
            raise NotFoundError(f"no concept vectors of space {space!r} to draw a heatmap of")
    if not (
        data.curves
        or data.image_curves
        or data.measures
        or data.heatmaps
        or data.grid_cells
        or data.peak_inference
        or chosen.rdms
        or chosen.mds
        or chosen.layer_matrices
    ):
        which = f" against word space {word_space!r}" if word_space else ""
        raise NotFoundError(
            f"no layer-curve results{which} in {wh.root}: run `semwh analyze sweep` "
            "(or `semwh run CONFIG.toml`) first"
        )
    return data


def write_figures(
    wh: Warehouse,
    out_dir: Path,
    *,
    alpha: float = 0.05,
    word_space: str | None = None,
    sweep_ids: Sequence[int] = (),
    figures: FigureSet = FigureSet(),
    force: bool = False,
) -> list[Figure]:
    """Write the report's figures (no HTML) into ``out_dir``: the layer curves (the current
    ones, or those of ``sweep_ids``), recovery, grids and what ``figures`` names, each as
    PNG (300 dpi), PDF, SVG (editable text) and the CSV of its numbers.

    ``out_dir`` follows the rule of user outputs (outside the warehouse; a folder holding
    files needs ``force``, which replaces the figures' own files only).

    Returns:
        The figures written: each one's ``paths`` (``.png``, ``.pdf``, ``.svg``, ``.csv``),
        ``title`` and ``caption`` (measure, test, permutations, FDR family, bars and bands).

    Raises:
        NotFoundError: Nothing to draw, an unknown space or model.
        ConfigError: A bad ``alpha``, an unknown measure, order or layer measure.
        OutputError: ``out_dir`` is inside the warehouse, a file, or a non-empty folder
            without ``force``.
    """
    alpha = check_level(alpha, "alpha")
    protected = wh.protected_paths
    data = _gather(wh, alpha=alpha, word_space=word_space, sweep_ids=sweep_ids, chosen=figures)
    check_output_folder(out_dir, protected, force=force)
    return draw_figures(wh, data, out_dir, alpha=alpha, chosen=figures, protected=protected)


def build_report(
    wh: Warehouse,
    out_dir: Path,
    *,
    alpha: float = 0.05,
    word_space: str | None = None,
    title: str = "semwh report: semantics across layers",
    force: bool = False,
    in_warehouse: bool = False,
    measures: Sequence[str] = (),
    heatmaps: Sequence[str] = (),
    rdms: Sequence[str] = (),
    mds: Sequence[str] = (),
    layer_matrices: Sequence[str] = (),
    order: str = "auto",
    layer_measure: str = "cka",
) -> ReportInfo:
    """Write figures (``figures/*``: PNG, PDF, SVG and CSV each) and ``report.html`` into
    ``out_dir``.

    ``out_dir`` follows the rule of user outputs: never inside the warehouse, and a folder
    that exists and is not empty is refused unless ``force``; with ``force`` the report's own
    files are replaced (each atomically) and other files in the folder are left alone.
    ``in_warehouse`` is for the report stage of run files, whose report belongs to the
    warehouse folder (``<warehouse>/report`` by default): only the registry and the vectors
    root stay off limits. ``measures`` adds a figure per word space for each measure named
    (``2v2``, ``rsa``, ``cka``, ``knn``, ``reg2v2``) from the ``measure_curves`` query, RSA
    against an RDM target with its noise ceiling as a band; ``heatmaps`` adds a heatmap of
    each named space (``SPACE`` or ``SPACE:METRIC``), concepts in WordNet hypernym order
    where known. ``rdms`` and ``mds`` add each named space's RDM and 2-D MDS, concepts
    ordered and grouped by ``order``; ``layer_matrices`` each named model's layer x layer
    matrix under ``layer_measure`` (``cka`` or ``rsa``).

    Raises:
        NotFoundError: The warehouse holds no 2 vs 2 results (nothing to plot).
        ConfigError: ``alpha`` is not a number strictly between 0 and 1.
        OutputError: ``out_dir`` is inside the warehouse, a file, or a non-empty folder
            without ``force``.
    """
    alpha = check_level(alpha, "alpha")
    protected = wh.data_paths if in_warehouse else wh.protected_paths
    chosen = FigureSet(
        measures=measures,
        heatmaps=heatmaps,
        rdms=rdms,
        mds=mds,
        layer_matrices=layer_matrices,
        order=order,
        layer_measure=layer_measure,
    )
    check_heatmaps(wh, heatmaps)
    _check_structure(wh, chosen)
    check_output_folder(out_dir, protected, force=force)
    data = _gather(wh, alpha=alpha, word_space=word_space, sweep_ids=(), chosen=chosen)
    figures = draw_figures(
        wh, data, out_dir / "figures", alpha=alpha, chosen=chosen, protected=protected
    )
    page = out_dir / "report.html"
    with atomic_output(page, protected, force=True) as tmp:
        tmp.write_text(render_html(data, figures, title=title, alpha=alpha), encoding="utf-8")
    return ReportInfo(
        html=page,
        figures=[p for f in figures for p in f.paths],
        n_curve_rows=len(data.curves),
    )


__all__ = [
    "FigureSet",
    "ReportData",
    "ReportInfo",
    "build_report",
    "draw_figures",
    "render_html",
    "report_data",
    "write_figures",
]
