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
    Figure,
    curve_figures,
    grid_figures,
    heatmap_figure,
    measure_figures,
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


@dataclass(frozen=True)
class ReportInfo:
    """What ``build_report`` wrote."""

    html: Path
    figures: list[Path]
    n_curve_rows: int


def report_data(
    wh: Warehouse,
    *,
    alpha: float = 0.05,
    word_space: str | None = None,
    measures: Sequence[str] = (),
    heatmaps: Sequence[str] = (),
) -> ReportData:
    """Run the named queries behind the report in one sandbox connection.

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
            return run_named(conn, load_query(name), params).table.to_pylist()

        image_curves = rows("layer_curves", {**ws, "level": "image"})
        if image_curves:
            # Each row's permutation scheme, as its sweep's results record it.
            schemes: dict[tuple[Any, ...], set[str]] = {}
            for key in conn.execute(_SCHEMES_SQL).fetchall():
                schemes.setdefault(tuple(key[:3]), set()).add(str(key[3]))
            for row in image_curves:
                space = row.get("space") or f"{row['model']}/{row['layer']}"
                found = schemes.get((row.get("sweep_id"), space, row.get("word_space")), set())
                row["permute"] = ", ".join(sorted(found))
        return ReportData(
            curves=rows("layer_curves", ws),
            peaks=rows("peak_layer", ws),
            first_significant=rows("first_significant_depth", {**ws, "alpha": alpha}),
            recovery=rows("recovery_by_layer", ws),
            measures=[
                row
                for measure in dict.fromkeys(measures)
                for row in rows("measure_curves", {**ws, "measure": measure})
            ],
            ceilings=rows("noise_ceilings", {}) if measures else [],
            heatmaps={key: rows("space_vectors", {"space": key[0]}) for key in heatmap_keys},
            grid_cells=rows("grid_cells", {"alpha": alpha}),
            peak_inference=rows("peak_inference", {}),
            image_curves=image_curves,
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
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure_html(fig: Figure) -> str:
    data = base64.b64encode(fig.png).decode("ascii")
    return (
        f"<figure id='fig-{html.escape(fig.key)}'>"
        f"<img alt='{html.escape(fig.title)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{html.escape(fig.title)} (vector version: "
        f"<code>{html.escape(fig.svg_path.name)}</code>)</figcaption></figure>"
    )


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; margin: 0.5em; } img { max-width: 100%; }
figcaption { font-size: 0.8em; color: #555; } .meta, .empty { color: #666; font-size: 0.85em; }
"""

# Marks the page once its figures are decoded, so a headless browser can check the rendering.
_CHECK = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-figures', ok + '/' + imgs.length);
});
"""


def render_html(data: ReportData, figures: list[Figure], *, title: str, alpha: float) -> str:
    """The report page: figures as base64 data URIs, key tables, provenance; no external files."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='meta'>semwh {html.escape(__version__)}, {now}. Filled markers: layers "
        f"significant after Benjamini–Hochberg FDR at {alpha:g}; shaded: permutation null "
        "(mean to 95th percentile); dashed: random-weight controls.</p>",
        "<h2>Figures</h2>",
        *(_figure_html(f) for f in figures if not f.key.startswith("grid_")),
        "<h2>Peak layer per model and word space</h2>",
        _table(data.peaks),
        f"<h2>First layer with a significant 2 vs 2 (FDR ≤ {alpha:g})</h2>",
        _table(data.first_significant),
        "<h2>Layer curves</h2>",
        _table(data.curves, CURVE_COLUMNS),
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
) -> ReportInfo:
    """Write figures (``figures/*.png``, ``*.svg``) and ``report.html`` into ``out_dir``.

    ``out_dir`` follows the rule of user outputs: never inside the warehouse, and a folder
    that exists and is not empty is refused unless ``force``; with ``force`` the report's own
    files are replaced (each atomically) and other files in the folder are left alone.
    ``in_warehouse`` is for the report stage of run files, whose report belongs to the
    warehouse folder (``<warehouse>/report`` by default): only the registry and the vectors
    root stay off limits. ``measures`` adds a panel per word space for each measure named
    (``2v2``, ``rsa``, ``cka``, ``knn``, ``reg2v2``) from the ``measure_curves`` query, RSA
    against an RDM target with its noise ceiling as a band; ``heatmaps`` adds a heatmap of
    each named space (``SPACE`` or ``SPACE:METRIC``), concepts in WordNet hypernym order.

    Raises:
        NotFoundError: The warehouse holds no 2 vs 2 results (nothing to plot).
        ConfigError: ``alpha`` is not a number strictly between 0 and 1.
        OutputError: ``out_dir`` is inside the warehouse, a file, or a non-empty folder
            without ``force``.
    """
    alpha = check_level(alpha, "alpha")
    protected = wh.data_paths if in_warehouse else wh.protected_paths
    check_heatmaps(wh, heatmaps)
    check_output_folder(out_dir, protected, force=force)
    data = report_data(wh, alpha=alpha, word_space=word_space, measures=measures, heatmaps=heatmaps)
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
    ):
        which = f" against word space {word_space!r}" if word_space else ""
        raise NotFoundError(
            f"no layer-curve results{which} in {wh.root}: run `semwh analyze sweep` "
            "(or `semwh run CONFIG.toml`) first"
        )
    figures = curve_figures(data.curves, data.recovery, alpha, out_dir / "figures", protected)
    figures += curve_figures(
        data.image_curves, [], alpha, out_dir / "figures", protected, level="image"
    )
    figures += measure_figures(data.measures, alpha, out_dir / "figures", protected, data.ceilings)
    figures += [
        heatmap_figure(
            found, space=space, metric=metric, out_dir=out_dir / "figures", protected=protected
        )
        for (space, metric), found in data.heatmaps.items()
    ]
    figures += grid_figures(data.grid_cells, alpha, out_dir / "figures", protected)
    page = out_dir / "report.html"
    with atomic_output(page, protected, force=True) as tmp:
        tmp.write_text(render_html(data, figures, title=title, alpha=alpha), encoding="utf-8")
    return ReportInfo(
        html=page,
        figures=[p for f in figures for p in (f.png_path, f.svg_path)],
        n_curve_rows=len(data.curves),
    )


__all__ = ["ReportData", "ReportInfo", "build_report", "render_html", "report_data"]
