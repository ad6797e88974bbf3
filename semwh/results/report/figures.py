"""Figures of layer curves and recovery, drawn from named-query rows only (matplotlib, Agg)."""

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
    """One written figure: its title, the PNG bytes (for embedding) and the files on disk."""

    key: str
    title: str
    png: bytes
    png_path: Path
    svg_path: Path


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise MissingDependencyError(
            "the report needs matplotlib: pip install 'semwh[report]'"
        ) from exc
    # Headless by design: reports are written on clusters and in CI without a display.
    matplotlib.use("Agg", force=True)
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


def _by_model(rows: Sequence[Row]) -> dict[str, list[Row]]:
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(row["model"], []).append(row)
    for group in groups.values():
        group.sort(key=lambda r: (r["relative_depth"] is None, r["relative_depth"] or 0.0))
    return groups


def _base_name(model: str) -> str:
    return model[: -len("-random")] if model.endswith("-random") else model


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
) -> Figure:
    """One panel: ``y`` against relative depth, one line per model.

    Models named ``*-random`` (random-weight controls) are dashed in their trained model's
    colour; the permutation-null band (``band`` columns, null mean to 95th percentile) is
    shaded; layers significant after FDR (``p_fdr`` <= ``alpha``) are filled markers, the
    others open. ``ceiling`` (lower, upper) draws a target's noise ceiling as a grey band.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.2), dpi=110)
    colours: dict[str, Any] = {}
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    groups = _by_model(rows)
    for model in sorted(groups, key=lambda m: (m.endswith("-random"), m)):
        base = _base_name(model)
        if base not in colours:
            colours[base] = cycle[len(colours) % len(cycle)]
        colour = colours[base]
        group = [r for r in groups[model] if r.get(y) is not None]
        if not group:
            continue
        xs = [r["relative_depth"] for r in group]
        ys = [r[y] for r in group]
        dashed = model.endswith("-random")
        ax.plot(xs, ys, linestyle="--" if dashed else "-", color=colour, label=model, lw=1.6)
        if band is not None:
            lows = [r.get(band[0]) for r in group]
            highs = [r.get(band[1]) for r in group]
            if all(v is not None for v in lows + highs):
                ax.fill_between(xs, lows, highs, color=colour, alpha=0.12, lw=0)
        sig = [_significant(r, p_fdr, alpha) for r in group]
        ax.scatter(
            [x for x, s in zip(xs, sig, strict=True) if s],
            [v for v, s in zip(ys, sig, strict=True) if s],
            color=colour,
            s=28,
            zorder=3,
        )
        ax.scatter(
            [x for x, s in zip(xs, sig, strict=True) if not s],
            [v for v, s in zip(ys, sig, strict=True) if not s],
            facecolors="white",
            edgecolors=colour,
            s=28,
            zorder=3,
        )
    if chance is not None:
        ax.axhline(chance, color="grey", lw=0.8, ls=":")
    if ceiling is not None:
        ax.axhspan(ceiling[0], ceiling[1], color="grey", alpha=0.25, lw=0, label="noise ceiling")
    ax.set_xlabel("relative depth (0 = first probed layer, 1 = last)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.set_xlim(-0.02, 1.02)
    ax.grid(alpha=0.25)
    ax.plot([], [], "o", color="black", label=f"FDR p ≤ {alpha:g}", ms=5)
    ax.plot([], [], "o", mfc="white", mec="black", label="not significant", ms=5)
    if band is not None:
        ax.fill_between([], [], [], color="grey", alpha=0.2, label="null mean .. 95th pct")
    ax.legend(fontsize=7, loc="best", frameon=False)
    fig.tight_layout()
    return _save(plt, fig, key, title, out_dir, protected)


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
) -> list[Figure]:
    """Per word space: 2 vs 2 and RSA against relative depth, and recovery by layer.

    Targets that are layers of a model (``MODEL/LAYER``: a language model's text layers,
    say) share one figure per model and test, one line per (model, target layer). Curves of
    the image level (``level="image"``) get figures of their own, titled so.
    """
    prefix, at = ("", "") if level == "concept" else ("image_", ", image level")
    figures: list[Figure] = []
    groups: dict[str, list[Row]] = {}
    for r in curves:
        target = str(r["word_space"])
        if "/" in target:
            owner, layer = target.split("/", 1)
            groups.setdefault(f"{owner}/", []).append({**r, "model": f"{r['model']} × {layer}"})
        else:
            groups.setdefault(target, []).append(r)
    for target in sorted(groups):
        rows = groups[target]
        if target.endswith("/"):
            word_space, key_part = f"the layers of {target[:-1]}", f"{slug(target[:-1])}_layers"
        else:
            # "X_layers" is the name of the figure of X's layers: such a space gets a hash.
            word_space, key_part = target, slug(target, hashed=target.endswith("_layers"))
        figures.append(
            curve_figure(
                rows,
                y="accuracy_2v2",
                p_fdr="p_fdr_2v2",
                band=("null_mean_2v2", "null_q95_2v2"),
                chance=0.5,
                ylabel="2 vs 2 accuracy",
                title=f"2 vs 2 accuracy against {word_space}{at}",
                alpha=alpha,
                key=f"{prefix}2v2_{key_part}",
                out_dir=out_dir,
                protected=protected,
                ceiling=rows_ceiling(rows, "_2v2"),
            )
        )
        if any(r.get("rho_rsa") is not None for r in rows):
            figures.append(
                curve_figure(
                    rows,
                    y="rho_rsa",
                    p_fdr="p_fdr_rsa",
                    band=("null_mean_rsa", "null_q95_rsa"),
                    chance=0.0,
                    ylabel="RSA (Spearman rho)",
                    title=f"RSA against {word_space}{at}",
                    alpha=alpha,
                    key=f"{prefix}rsa_{key_part}",
                    out_dir=out_dir,
                    protected=protected,
                    ceiling=rows_ceiling(rows, "_rsa"),
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
) -> list[Figure]:
    """One panel per (word space, measure, variant) of measure_curves rows; RSA and 2 vs 2
    against an RDM target get their noise ceiling as a band, on the scale of the curve (the
    rows' own ceilings; else the noise_ceilings row over the same number of concepts)."""
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
            )
        )
    return figures


def heatmap_figure(
    rows: Sequence[Row],
    *,
    space: str,
    metric: str,
    out_dir: Path,
    protected: Sequence[Path] = (),
) -> Figure:
    """The concept-by-concept matrix of one space, concepts in the order of ``rows`` (the
    space_vectors query: WordNet hypernym path order).

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
    title = f"{space}: {what}, concepts in WordNet hypernym order"
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    key = f"heatmap_{slug(space)}_{_clean(metric)}"
    return _save(plt, fig, key, title, out_dir, protected)


def _save(
    plt: Any, fig: Any, key: str, title: str, out_dir: Path, protected: Sequence[Path]
) -> Figure:
    """Write ``fig`` as ``KEY.png`` and ``KEY.svg`` in ``out_dir`` and close it.

    The report folder was checked as a whole (build_report): its own files are replaced.
    """
    png_path, svg_path = out_dir / f"{key}.png", out_dir / f"{key}.svg"
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    png = buf.getvalue()
    with atomic_output(png_path, protected, force=True) as tmp:
        tmp.write_bytes(png)
    with atomic_output(svg_path, protected, force=True) as tmp:
        fig.savefig(tmp, format="svg")
    plt.close(fig)
    return Figure(key=key, title=title, png=png, png_path=png_path, svg_path=svg_path)


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
    return _save(plt, fig, key, title, out_dir, protected)


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
