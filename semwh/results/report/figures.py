"""Figures of layer curves and recovery, drawn from named-query rows only (matplotlib, Agg):
PNG at 300 dpi, PDF, SVG with real text and each figure's numbers as CSV beside it."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semwh.errors import MissingDependencyError
from semwh.results.output import atomic_output

Row = dict[str, Any]


@dataclass(frozen=True)
class Figure:
    """One written figure: its title and caption, the PNG bytes (for embedding) and its files
    on disk: PNG (300 dpi), PDF, SVG (text as text) and the plotted numbers as CSV."""

    key: str
    title: str
    png: bytes
    png_path: Path
    svg_path: Path
    pdf_path: Path
    csv_path: Path
    caption: str = ""

    @property
    def paths(self) -> list[Path]:
        """The figure's files: PNG, PDF, SVG and CSV."""
        return [self.png_path, self.pdf_path, self.svg_path, self.csv_path]


#: Okabe & Ito's colour-blind-safe palette (yellow last: it is faint on white).
PALETTE = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#000000",
    "#F0E442",
)
#: Marker shapes of the FDR families (sweeps) whose significant layers a figure marks.
FAMILY_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
#: Resolution of the PNG files (journals ask for 300 dpi).
PNG_DPI = 300


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise MissingDependencyError(
            "the report needs matplotlib: pip install 'semwh[report]'"
        ) from exc
    # Headless by design: reports are written on clusters and in CI without a display.
    matplotlib.use("Agg", force=True)
    # Names are text, never TeX: a space or concept named "a$x_$" would otherwise be read as
    # mathtext (drawn in italics, or a parse error that loses the figure).
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


_KEPT = re.compile(r"[a-z0-9._-]+")

#: Characters of a name kept in a file name (figure names add a prefix and a suffix).
_SLUG_MAX = 80


def slug(text: str, *, hashed: bool = False) -> str:
    """The part of a file name that stands for a name (a space's, a measure's), one per name.

    A name of lower-case letters, digits, ``.``, ``_`` and ``-`` is used as it is. Any other
    name keeps its safe characters and gains ``+`` and a short hash of the exact name, so
    that names that clean up alike (``a b``, ``a*b?``, ``a_b``; ``Words``, ``words`` on a
    case-insensitive disk) never share a figure file. ``hashed`` adds the hash to any name
    (one that could read like another figure's name, ``txt_layers`` beside the layers of
    ``txt``).
    """
    if _KEPT.fullmatch(text) and not hashed and len(text) <= _SLUG_MAX:
        return text
    # A long name keeps its first characters: the hash tells names apart, and the file name
    # stays well under the 255 bytes a file system allows.
    return f"{_clean(text)[:_SLUG_MAX]}+{hashlib.sha256(text.encode('utf-8')).hexdigest()[:10]}"


def _clean(text: str) -> str:
    """The safe characters of a measure's own label (``k=3``: ``k_3``; labels are distinct)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "space"


def _significant(row: Row, column: str, alpha: float) -> bool:
    value = row.get(column)
    return value is not None and value <= alpha


def _base_name(model: str) -> str:
    return model[: -len("-random")] if model.endswith("-random") else model


@dataclass(frozen=True)
class Family:
    """The FDR family a significance mark comes from: one sweep's Benjamini–Hochberg set."""

    sweep_id: int
    n_tests: int
    tests: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    models: tuple[str, ...] = ()

    def describe(self) -> str:
        """``sweep 3 (42 tests: 2v2, rsa; 2 models x 3 targets)``."""
        parts = []
        if self.tests:
            parts.append(", ".join(self.tests))
        if self.models or self.targets:
            parts.append(f"{_count(self.models, 'model')} x {_count(self.targets, 'target')}")
        inner = f"{self.n_tests} tests" + (f": {'; '.join(parts)}" if parts else "")
        return f"sweep {self.sweep_id} ({inner})"


def _count(items: Sequence[Any], word: str) -> str:
    return f"{len(items)} {word}{'' if len(items) == 1 else 's'}"


def _layer_order(rows: Sequence[Row]) -> list[tuple[str, float | None]]:
    """The layers of a panel in depth order, each with its relative depth."""
    seen: dict[str, tuple[Any, Any, Any]] = {}
    for r in rows:
        key = (r.get("depth_index") is None, r.get("depth_index") or 0, r.get("relative_depth"))
        seen.setdefault(str(r["layer"]), key)
    ordered = sorted(seen.items(), key=lambda kv: (kv[1][0], kv[1][1], kv[1][2] or 0.0, kv[0]))
    return [(name, key[2]) for name, key in ordered]


def _depth_ticks(positions: list[int], depths: list[float | None]) -> tuple[list[int], list[str]]:
    """At most about seven relative-depth labels for the top axis."""
    known = [(p, d) for p, d in zip(positions, depths, strict=True) if d is not None]
    step = max(1, -(-len(known) // 7))
    kept = known[::step]
    if known and kept[-1] != known[-1]:
        kept.append(known[-1])
    return [p for p, _ in kept], [f"{d:.2f}" for _, d in kept]


def _pair(row: Row, columns: tuple[str, str] | None) -> tuple[float, float] | None:
    if columns is None:
        return None
    low, high = row.get(columns[0]), row.get(columns[1])
    if low is None or high is None:
        return None
    return float(low), float(high)


def _counts(rows: Sequence[Row], column: str) -> str:
    found = sorted({int(r[column]) for r in rows if r.get(column) is not None})
    return " / ".join(str(v) for v in found)


def curve_figure(
    rows: Sequence[Row],
    *,
    y: str,
    p_fdr: str,
    band: tuple[str, str] | None,
    chance: float | None,
    ylabel: str,
    title: str,
    alpha: float,
    key: str,
    out_dir: Path,
    protected: Sequence[Path] = (),
    ceiling: tuple[float, float] | None = None,
    ceiling_columns: tuple[str, str] | None = None,
    ci: tuple[str, str] | None = None,
    families: dict[int, Family] | None = None,
    test: str = "permutation test (the target's concepts relabelled)",
) -> Figure:
    """A journal figure of one statistic over the layers: one panel per model, layer names
    on the x axis and relative depth on the top axis.

    Each row may carry ``panel`` (the panel it belongs to; default its model without
    ``-random``) and ``line`` (its line's label and colour; default the panel). Models named
    ``*-random`` (random-weight controls) are dashed in their trained model's colour. Layers
    significant after FDR (``p_fdr`` <= ``alpha``) are filled markers whose shape names the
    family (the row's ``sweep_id``; ``families`` describes each), the others open. ``ci``
    columns draw error bars (the stored bootstrap interval, when present); ``band`` columns
    (null mean, 95th percentile) draw the null's 95th percentile as a thin dotted line per
    curve; the noise ceiling (``ceiling``, or each panel's ``ceiling_columns``) is a grey
    band on the same axes. The caption names the measure, the test, the permutations, the
    family and what the band and bars are; the CSV beside the figure holds every plotted
    number.
    """
    plt = _pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    families = families or {}
    plotted = [r for r in rows if r.get(y) is not None]
    panels: dict[str, list[Row]] = {}
    for r in plotted:
        panels.setdefault(str(r.get("panel") or _base_name(str(r["model"]))), []).append(r)
    names = sorted(panels)
    n_cols = min(3, max(1, len(names)))
    n_rows = -(-len(names) // n_cols) if names else 1
    widest = max((len(_layer_order(panels[p])) for p in names), default=4)
    width = min(13.0, max(5.5, n_cols * max(3.2, 0.3 * widest + 1.4)))
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(width, 3.3 * n_rows + 1.5),
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    line_colours: dict[str, str] = {}
    sweeps = sorted({int(r["sweep_id"]) for r in plotted if r.get("sweep_id") is not None})
    marker_of = {s: FAMILY_MARKERS[i % len(FAMILY_MARKERS)] for i, s in enumerate(sweeps)}
    table: list[Row] = []
    has = {"ci": False, "ci_asked": ci is not None, "null": False, "ceiling": False}
    has["random"] = False
    ceilings_seen: set[tuple[float, float]] = set()
    for index, panel in enumerate(names):
        ax = axes[index // n_cols][index % n_cols]
        layers = _layer_order(panels[panel])
        position = {name: k for k, (name, _) in enumerate(layers)}
        lines: dict[tuple[str, bool], list[Row]] = {}
        for r in panels[panel]:
            model = str(r["model"])
            label = str(r.get("line") or _base_name(model))
            lines.setdefault((label, model.endswith("-random")), []).append(r)
        for (label, random), group in sorted(lines.items()):
            colour = line_colours.setdefault(label, PALETTE[len(line_colours) % len(PALETTE)])
            group = sorted(group, key=lambda r: position[str(r["layer"])])
            xs = [position[str(r["layer"])] for r in group]
            ys = [float(r[y]) for r in group]
            has["random"] |= random
            ax.plot(xs, ys, ls="--" if random else "-", color=colour, lw=1.5, zorder=2)
            intervals = [_pair(r, ci) for r in group]
            if any(iv is not None for iv in intervals):
                has["ci"] = True
                shown = [(x, v, iv) for x, v, iv in zip(xs, ys, intervals, strict=True) if iv]
                ax.errorbar(
                    [x for x, _, _ in shown],
                    [v for _, v, _ in shown],
                    yerr=[
                        [max(0.0, v - iv[0]) for _, v, iv in shown],
                        [max(0.0, iv[1] - v) for _, v, iv in shown],
                    ],
                    fmt="none",
                    ecolor=colour,
                    elinewidth=0.9,
                    capsize=2.0,
                    zorder=2,
                )
            nulls = [_pair(r, band) for r in group]
            if band is not None and all(nv is not None for nv in nulls):
                has["null"] = True
                ax.plot(xs, [nv[1] for nv in nulls if nv], ls=":", lw=0.9, color=colour, zorder=1)
            for r, x, v in zip(group, xs, ys, strict=True):
                sig = _significant(r, p_fdr, alpha)
                sweep = r.get("sweep_id")
                marker = "o" if sweep is None else marker_of.get(int(sweep), "o")
                ax.scatter(
                    [x],
                    [v],
                    marker=marker,
                    s=26,
                    zorder=3,
                    facecolors=colour if sig else "white",
                    edgecolors=colour,
                    linewidths=1.0,
                )
                low_high = _pair(r, ci)
                null = _pair(r, band)
                table.append(
                    {
                        "panel": panel,
                        "line": label,
                        "model": r.get("model"),
                        "layer": r.get("layer"),
                        "depth_index": r.get("depth_index"),
                        "relative_depth": r.get("relative_depth"),
                        "target": r.get("word_space"),
                        "statistic": v,
                        "ci_low": low_high[0] if low_high else None,
                        "ci_high": low_high[1] if low_high else None,
                        "null_mean": null[0] if null else None,
                        "null_q95": null[1] if null else None,
                        "p_fdr": r.get(p_fdr),
                        "significant": sig,
                        "fdr_family_sweep_id": r.get("sweep_id"),
                        "n_permutations": r.get("n_permutations"),
                    }
                )
        band_here = ceiling
        if band_here is None and ceiling_columns is not None:
            found = {_pair(r, ceiling_columns) for r in panels[panel]} - {None}
            band_here = next(iter(found)) if len(found) == 1 else None
        if band_here is not None:
            has["ceiling"] = True
            ceilings_seen.add(band_here)
            ax.axhspan(band_here[0], band_here[1], color="0.6", alpha=0.3, lw=0, zorder=0)
            for row in table:
                if row["panel"] == panel:
                    row["ceiling_lower"], row["ceiling_upper"] = band_here
        if chance is not None:
            ax.axhline(chance, color="0.4", lw=0.8, ls=(0, (1, 2)), zorder=1)
        positions = list(range(len(layers)))
        ax.set_xticks(positions, [name for name, _ in layers], rotation=60, ha="right")
        ax.tick_params(axis="x", labelsize=6.5 if len(layers) > 12 else 7.5)
        ax.set_xlim(-0.5, len(layers) - 0.5)
        top = ax.secondary_xaxis("top")
        ticks, labels = _depth_ticks(positions, [d for _, d in layers])
        top.set_xticks(ticks, labels)
        top.tick_params(labelsize=6.5)
        top.set_xlabel("relative depth", fontsize=7.5)
        ax.set_title(panel, fontsize=9)
        ax.grid(alpha=0.25, lw=0.5)
        if index % n_cols == 0:
            ax.set_ylabel(ylabel)
    for extra in range(len(names), n_rows * n_cols):
        axes[extra // n_cols][extra % n_cols].set_visible(False)
    fig.suptitle(title, fontsize=10)

    handles: list[Any] = [
        Line2D([], [], color=c, lw=1.5, label=label) for label, c in line_colours.items()
    ]
    if has["random"]:
        handles.append(Line2D([], [], color="0.3", ls="--", lw=1.5, label="random weights"))
    for s in sweeps:
        handles.append(
            Line2D(
                [],
                [],
                ls="",
                marker=marker_of[s],
                color="0.2",
                ms=5,
                label=f"FDR p ≤ {alpha:g}, sweep {s}",
            )  # fmt: skip
        )
    handles.append(
        Line2D([], [], ls="", marker="o", mfc="white", mec="0.2", ms=5, label="not significant")
    )
    if has["ci"]:
        handles.append(Line2D([], [], color="0.2", marker="|", ms=8, lw=0.9, label="95% CI"))
    if has["null"]:
        handles.append(Line2D([], [], color="0.2", ls=":", lw=0.9, label="null 95th pct"))
    if has["ceiling"]:
        handles.append(Patch(color="0.6", alpha=0.3, label="noise ceiling"))
    if chance is not None:
        handles.append(Line2D([], [], color="0.4", ls=(0, (1, 2)), lw=0.8, label="chance"))
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=max(1, min(len(handles), int(width // 1.9))),
        fontsize=7,
        frameon=False,
    )
    caption = _curve_caption(
        title=title,
        ylabel=ylabel,
        test=test,
        rows=plotted,
        alpha=alpha,
        sweeps=sweeps,
        families=families,
        markers=marker_of,
        has=has,
        ceilings=ceilings_seen,
        chance=chance,
    )
    return _save(plt, fig, key, title, out_dir, protected, caption=caption, table=table)


def _curve_caption(
    *,
    title: str,
    ylabel: str,
    test: str,
    rows: Sequence[Row],
    alpha: float,
    sweeps: list[int],
    families: dict[int, Family],
    markers: dict[int, str],
    has: dict[str, bool],
    ceilings: set[tuple[float, float]],
    chance: float | None,
) -> str:
    shapes = {"o": "circles", "s": "squares", "^": "triangles", "D": "diamonds"}
    parts = [f"{title}. Measure: {ylabel}; x axis: the probed layers in depth order (top: "
             "relative depth, 0 = first probed layer, 1 = last)."]  # fmt: skip
    permutations = _counts(rows, "n_permutations")
    parts.append(f"Test: {test}" + (f", {permutations} permutations." if permutations else "."))
    if sweeps:
        named = "; ".join(
            f"{shapes.get(markers[s], markers[s])}: "
            + (families[s].describe() if s in families else f"sweep {s}")
            for s in sweeps
        )
        parts.append(
            f"Filled markers: p ≤ {alpha:g} after Benjamini–Hochberg FDR within the family "
            f"of the sweep each result belongs to ({named}); open markers: not significant."
        )
    else:
        parts.append(f"Filled markers: FDR p ≤ {alpha:g}; open markers: not significant.")
    if has["ci"]:
        boots = _counts(rows, "n_bootstrap")
        what = f"{boots} resamples" if boots else "stored resamples"
        parts.append(f"Error bars: the stored 95% bootstrap interval ({what}).")
    elif has["ci_asked"]:
        parts.append("No error bars: no stored bootstrap intervals for these results.")
    if has["null"]:
        parts.append("Dotted lines: the 95th percentile of each curve's permutation null.")
    if has["random"]:
        parts.append("Dashed: random-weight controls.")
    if has["ceiling"]:
        shown = "; ".join(f"{lo:.3g} to {hi:.3g}" for lo, hi in sorted(ceilings))
        parts.append(
            f"Grey band: the target's noise ceiling (lower to upper bound: {shown}), same "
            "comparator and concepts as the curve."
        )
    if chance is not None:
        parts.append(f"Fine dotted line: chance ({chance:g}).")
    return " ".join(parts)


def rows_ceiling(rows: Sequence[Row], suffix: str = "") -> tuple[float, float] | None:
    """The noise ceiling the rows share (``ceiling_lower{suffix}``, ``ceiling_upper{suffix}``:
    each result's own, same comparator and concepts), or None when they have none or differ."""
    found = {(r.get(f"ceiling_lower{suffix}"), r.get(f"ceiling_upper{suffix}")) for r in rows}
    if len(found) != 1:
        return None
    low, high = next(iter(found))
    return None if low is None or high is None else (float(low), float(high))


def curve_figures(
    curves: Sequence[Row],
    recovery: Sequence[Row],
    alpha: float,
    out_dir: Path,
    protected: Sequence[Path] = (),
    level: str = "concept",
    families: dict[int, Family] | None = None,
) -> list[Figure]:
    """Per word space: 2 vs 2 and RSA over the layers, and recovery by layer.

    Targets that are layers of a model (``MODEL/LAYER``: a language model's text layers,
    say) share one figure per model and test, one line per target layer. Curves of the image
    level (``level="image"``) get figures of their own, titled so. Rows carry their stored
    intervals as ``ci_low_<test>``, ``ci_high_<test>`` and ``n_bootstrap_<test>``
    (:func:`semwh.results.report.intervals.with_intervals`).
    """
    prefix, at = ("", "") if level == "concept" else ("image_", ", image level")
    figures: list[Figure] = []
    groups: dict[str, list[Row]] = {}
    for r in curves:
        target = str(r["word_space"])
        if "/" in target:
            owner, layer = target.split("/", 1)
            groups.setdefault(f"{owner}/", []).append({**r, "line": layer})
        else:
            groups.setdefault(target, []).append(r)
    permuted = (
        "permutation test (the target's concepts relabelled)"
        if level == "concept"
        else "permutation test (stimuli relabelled by the scheme in the table)"
    )
    for target in sorted(groups):
        rows = groups[target]
        if target.endswith("/"):
            word_space, key_part = f"the layers of {target[:-1]}", f"{slug(target[:-1])}_layers"
        else:
            # "X_layers" is the name of the figure of X's layers: such a space gets a hash.
            word_space, key_part = target, slug(target, hashed=target.endswith("_layers"))
        for test, y, label, chance in (
            ("2v2", "accuracy_2v2", "2 vs 2 accuracy", 0.5),
            ("rsa", "rho_rsa", "RSA (Spearman rho)", 0.0),
        ):
            if not any(r.get(y) is not None for r in rows):
                continue  # a sweep without this test: no empty figure
            figures.append(
                curve_figure(
                    [{**r, "n_bootstrap": r.get(f"n_bootstrap_{test}")} for r in rows],
                    y=y,
                    p_fdr=f"p_fdr_{test}",
                    band=(f"null_mean_{test}", f"null_q95_{test}"),
                    chance=chance,
                    ylabel=label,
                    title=(
                        f"{'2 vs 2 accuracy' if test == '2v2' else 'RSA'} against {word_space}{at}"
                    ),
                    alpha=alpha,
                    key=f"{prefix}{test}_{key_part}",
                    out_dir=out_dir,
                    protected=protected,
                    ceiling_columns=(f"ceiling_lower_{test}", f"ceiling_upper_{test}"),
                    ci=(f"ci_low_{test}", f"ci_high_{test}"),
                    families=families,
                    test=permuted,
                )
            )
    for word_space in sorted({r["word_space"] for r in recovery}):
        rows = [
            r
            for r in recovery
            if r["word_space"] == word_space and r.get("relative_depth") is not None
        ]
        if rows:
            figures.append(
                curve_figure(
                    rows,
                    y="recovery_rate",
                    p_fdr="p_fdr",
                    band=None,
                    chance=0.5,
                    ylabel="1 vs 2 recovery rate",
                    title=f"Recovery of misclassified images' classes, {word_space}",
                    alpha=alpha,
                    key=f"recovery_{slug(word_space)}",
                    out_dir=out_dir,
                    protected=protected,
                    families=families,
                    test="binomial test of the success rate against 0.5",
                )
            )
    return figures


def measure_axis(measure: str) -> tuple[str, float | None]:
    """Axis label and chance level of a registered measure (its name and no chance line for
    a measure no longer registered)."""
    from semwh import measures

    if measure not in measures.names():
        return measure, None
    found = measures.get(measure)
    return found.label, found.chance


def measure_figures(
    rows: Sequence[Row],
    alpha: float,
    out_dir: Path,
    protected: Sequence[Path] = (),
    ceilings: Sequence[Row] = (),
    families: dict[int, Family] | None = None,
) -> list[Figure]:
    """One figure per (word space, measure, variant) of measure_curves rows; RSA and 2 vs 2
    against an RDM target get their noise ceiling as a band, on the scale of the curve (the
    rows' own ceilings; else the noise_ceilings row over the same number of concepts), and
    every result's stored bootstrap interval (``ci_low``, ``ci_high``) as error bars."""
    figures: list[Figure] = []
    keys = sorted({(r["word_space"], r["measure"], r["variant"]) for r in rows})
    for word_space, measure, variant in keys:
        group = [
            r
            for r in rows
            if (r["word_space"], r["measure"], r["variant"]) == (word_space, measure, variant)
        ]
        label, chance = measure_axis(measure)
        # Every row's own ceiling (same comparator, concepts and subjects): one band.
        band = rows_ceiling(group)
        if band is None and measure == "rsa":
            sizes = {r["n_concepts"] for r in group}
            band = next(
                (
                    (c["lower"], c["upper"])
                    for c in ceilings
                    if c["space"] == word_space
                    and c["method"] == variant
                    and {c["n_concepts"]} == sizes
                ),
                None,
            )
        figures.append(
            curve_figure(
                group,
                y="statistic",
                p_fdr="p_fdr",
                band=("null_mean", "null_q95"),
                chance=chance,
                ylabel=f"{label} ({variant})",
                title=f"{label} ({variant}) against {word_space}",
                alpha=alpha,
                key=f"{_clean(measure)}_{_clean(variant)}_{slug(word_space)}",
                out_dir=out_dir,
                protected=protected,
                ceiling=band,
                ci=("ci_low", "ci_high"),
                families=families,
            )
        )
    return figures


def heatmap_order(rows: Sequence[Row]) -> str:
    """The order of space_vectors rows in words: WordNet hypernym order only as far as the
    concepts have a WordNet path (the rest follow by id)."""
    with_path = sum(1 for r in rows if r.get("hypernym_path"))
    if rows and with_path == len(rows):
        return "concepts in WordNet hypernym order"
    if with_path:
        return (
            f"concepts in WordNet hypernym order ({with_path} of {len(rows)} with a WordNet "
            "path), then by id"
        )
    return "concepts by id (no WordNet hypernyms known)"


def heatmap_figure(
    rows: Sequence[Row],
    *,
    space: str,
    metric: str,
    out_dir: Path,
    protected: Sequence[Path] = (),
) -> Figure:
    """The concept-by-concept matrix of one space, concepts in the order of ``rows`` (the
    space_vectors query: WordNet hypernym path order where concepts have one, then by id;
    the caption says which).

    Layer, word and external spaces show their similarity matrix under ``metric`` (pearson,
    spearman, cosine); an RDM space shows its subjects' mean dissimilarity.
    """
    import numpy as np

    from semwh.analyze.similarity import similarity_matrix

    plt = _pyplot()
    names = [r.get("name") or r["concept"] for r in rows]
    vectors = np.asarray([r["vector"] for r in rows], dtype=np.float64)
    if rows and rows[0].get("kind") == "rdm":
        position = {w: k for k, w in enumerate(sorted(r["concept"] for r in rows))}
        n = len(rows)
        stack = vectors.reshape(n, -1, n)[:, :, [position[r["concept"]] for r in rows]]
        matrix = stack.mean(axis=1)
        what, cmap = "mean dissimilarity of the subjects", "viridis_r"
    else:
        matrix = similarity_matrix(vectors, metric=metric, space=space)
        what, cmap = f"{metric} similarity", "viridis"
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=110)
    image = ax.imshow(matrix, cmap=cmap, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=what)
    if len(names) <= 60:
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=5)
        ax.set_yticks(range(len(names)), names, fontsize=5)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    title = f"{space}: {what}, {heatmap_order(rows)}"
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    key = f"heatmap_{slug(space)}_{_clean(metric)}"
    table = [
        {
            "concept": r["concept"],
            **{str(c["concept"]): float(v) for c, v in zip(rows, line, strict=True)},
        }
        for r, line in zip(rows, matrix, strict=True)
    ]
    return _save(plt, fig, key, title, out_dir, protected, caption=f"{title}.", table=table)


def _save(
    plt: Any,
    fig: Any,
    key: str,
    title: str,
    out_dir: Path,
    protected: Sequence[Path],
    *,
    caption: str = "",
    table: Sequence[Row] = (),
    replace: bool = True,
) -> Figure:
    """Write ``fig`` as ``KEY.png`` (300 dpi), ``KEY.pdf`` and ``KEY.svg`` (text kept as text,
    so that an editor can change it) and ``table`` as ``KEY.csv`` in ``out_dir``; close it.

    A report folder was checked as a whole (build_report): its own files are replaced. A
    plot command passes ``replace=False`` unless forced: an existing file is refused.
    """
    import matplotlib

    paths = {ext: out_dir / f"{key}.{ext}" for ext in ("png", "pdf", "svg", "csv")}
    engine = fig.get_layout_engine()
    if engine is not None:
        # Lay the figure out once: every format then draws the same positions, and the
        # (costly) constrained layout is not solved again for each file.
        engine.execute(fig)
        fig.set_layout_engine(None)
    # A fixed salt for the SVG ids: the same numbers give the same bytes (a bundle hashes them).
    # PDF fonts as TrueType (Type 42): journals' production systems refuse Type 3 fonts.
    with matplotlib.rc_context(
        {"svg.fonttype": "none", "svg.hashsalt": "semwh", "pdf.fonttype": 42}
    ):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=PNG_DPI)
        png = buf.getvalue()
        with atomic_output(paths["png"], protected, force=replace) as tmp:
            tmp.write_bytes(png)
        for ext in ("pdf", "svg"):
            with atomic_output(paths[ext], protected, force=replace) as tmp:
                fig.savefig(tmp, format=ext, metadata=_metadata(ext))
    plt.close(fig)
    with atomic_output(paths["csv"], protected, force=replace) as tmp:
        write_csv(tmp, table)
    return Figure(
        key=key,
        title=title,
        png=png,
        png_path=paths["png"],
        svg_path=paths["svg"],
        pdf_path=paths["pdf"],
        csv_path=paths["csv"],
        caption=caption or f"{title}.",
    )


def _metadata(ext: str) -> dict[str, Any]:
    # No creation date: the same numbers give the same files (a bundle's hashes hold).
    return {"CreationDate": None} if ext == "pdf" else {"Date": None}


def write_csv(path: Path, table: Sequence[Row]) -> None:
    """The rows as CSV, columns in first-seen order, numbers at full precision, None empty."""
    import csv

    columns = list(dict.fromkeys(c for row in table for c in row))
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        for row in table:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})


def _short(space: str) -> str:
    return space.split("/", 1)[1] if "/" in space else space


def grid_heatmap(
    cells: Sequence[Row], *, alpha: float, out_dir: Path, protected: Sequence[Path] = ()
) -> Figure:
    """One grid (rows of the ``grid_cells`` query) as a heatmap of its statistic.

    Side A's spaces run down, side B's across; cells with a family-wise p (max-statistic)
    at or below ``alpha`` carry a dot, the best cell a frame; degenerate cells stay blank.
    """
    import numpy as np

    plt = _pyplot()
    first = cells[0]
    n_rows = 1 + max(int(c["row_index"]) for c in cells)
    n_cols = 1 + max(int(c["col_index"]) for c in cells)
    values = np.full((n_rows, n_cols), np.nan)
    row_names = [""] * n_rows
    col_names = [""] * n_cols
    for c in cells:
        i, j = int(c["row_index"]), int(c["col_index"])
        row_names[i], col_names[j] = _short(c["space_a"]), _short(c["space_b"])
        if c.get("statistic") is not None:
            values[i, j] = float(c["statistic"])
    test = first["test"]
    label = measure_axis(test)[0]
    if test == "rsa":
        label = f"{label} ({str(first.get('variant') or 'spearman').capitalize()} rho)"
    fig, ax = plt.subplots(
        figsize=(min(12.0, max(6.0, 2.5 + 0.55 * n_cols)), min(12.0, 2.4 + 0.32 * n_rows)),
        dpi=110,
    )
    image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap="viridis")
    fig.colorbar(image, ax=ax, label=label, shrink=0.85)
    sig = [c for c in cells if c.get("p_fwe") is not None and c["p_fwe"] <= alpha]
    ax.scatter(
        [int(c["col_index"]) for c in sig],
        [int(c["row_index"]) for c in sig],
        s=10,
        color="white",
        edgecolors="black",
        linewidths=0.4,
    )
    best = [c for c in cells if c.get("is_best")]
    for c in best:
        ax.add_patch(
            plt.Rectangle(
                (int(c["col_index"]) - 0.5, int(c["row_index"]) - 0.5),
                1,
                1,
                fill=False,
                edgecolor="red",
                lw=1.8,
            )
        )
    ax.set_xticks(range(n_cols), col_names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n_rows), row_names, fontsize=7)
    ax.set_xlabel(
        f"{first['side_b']}\n(dots: family-wise p ≤ {alpha:g}, max-statistic; frame: best cell)",
        fontsize=8,
    )
    ax.set_ylabel(str(first["side_a"]))
    best_text = ""
    if best:
        b = best[0]
        best_text = (
            f"; best {_short(b['space_a'])} x {_short(b['space_b'])}, p_fwe {b['p_fwe']:.3g}"
        )
    level = ", image level" if first.get("item_level") == "image" else ""
    title = (
        f"{label}: {first['side_a']} x {first['side_b']}\n"
        f"(grid {first['grid_id']}{level}{best_text})"
    )
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    sides = f"{slug(str(first['side_a']))}_{slug(str(first['side_b']))}"
    key = f"grid_{first['grid_id']}_{test}_{sides}"
    table = [
        {
            k: c.get(k)
            for k in (
                "space_a",
                "space_b",
                "row_index",
                "col_index",
                "statistic",
                "p_value",
                "p_fwe",
                "is_best",
                "n_permutations",
            )
        }  # fmt: skip
        for c in cells
    ]
    caption = (
        f"{label}, grid {first['grid_id']}: every space of {first['side_a']} (rows) against "
        f"every space of {first['side_b']} (columns){level}. Dots: cells with family-wise p ≤ "
        f"{alpha:g} from the max-statistic permutation null over the grid's cells; frame: the "
        "best cell."
    )
    return _save(plt, fig, key, title, out_dir, protected, caption=caption, table=table)


def grid_figures(
    cells: Sequence[Row], alpha: float, out_dir: Path, protected: Sequence[Path] = ()
) -> list[Figure]:
    """One heatmap per grid in the rows of the ``grid_cells`` query."""
    by_grid: dict[int, list[Row]] = {}
    for c in cells:
        by_grid.setdefault(int(c["grid_id"]), []).append(c)
    return [
        grid_heatmap(rows, alpha=alpha, out_dir=out_dir, protected=protected)
        for _, rows in sorted(by_grid.items())
    ]
