"""What labs look at before they trust a curve: a space's RDM ordered by a concept attribute,
a 2-D MDS of a space, and a model's layer x layer similarity matrix (linear CKA or RSA,
computed with the measures' own code), each as a figure with its numbers beside it.

>>> fig = rdm_figure(wh, "glove", Path("figs"), order="category")   # doctest: +SKIP
>>> fig.paths                                                        # doctest: +SKIP
[PosixPath('figs/rdm_glove.png'), ..., PosixPath('figs/rdm_glove.csv')]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semwh.errors import ConfigError, DegenerateInputError, NotFoundError
from semwh.results.report.figures import PALETTE, Figure, _pyplot, _save, slug
from semwh.warehouse.layout import Warehouse

#: Orders every space has besides its concepts' attribute columns: ``auto`` (WordNet
#: hypernyms where known, else a ``category`` attribute, else the id), ``wordnet`` (hypernym
#: path), ``lexname`` (WordNet lexicographer file), ``name`` and ``concept`` (the id).
BUILT_IN_ORDERS = ("auto", "wordnet", "lexname", "name", "concept")
#: Measures a layer x layer matrix can use.
LAYER_MEASURES = ("cka", "rsa")


@dataclass(frozen=True)
class OrderedRDM:
    """A space's dissimilarity matrix with its concepts in the order of an attribute.

    Attributes:
        space: The space's name.
        concepts: Concept ids, in the order of the rows.
        groups: Each concept's value of the ordering attribute ("" where it has none).
        matrix: n x n dissimilarities (1 - Pearson r of the concept vectors; an RDM space's
            subjects' mean).
        what: What the entries are.
        order: How the concepts were ordered, in words.
    """

    space: str
    concepts: list[str]
    groups: list[str]
    matrix: np.ndarray
    what: str
    order: str


@dataclass(frozen=True)
class LayerMatrix:
    """A model's layer x layer similarity under one measure.

    Attributes:
        model: The model.
        layers: Its layer spaces' names, in depth order.
        matrix: k x k values of the measure between every pair of layers.
        measure: ``cka`` or ``rsa``.
        variant: The measure's options, as results label them (``estimator=unbiased``).
        n_concepts: The concepts all layers share (the ones compared).
    """

    model: str
    layers: list[str]
    matrix: np.ndarray
    measure: str
    variant: str
    n_concepts: int


def _concept_info(wh: Warehouse) -> dict[str, dict[str, Any]]:
    from sqlalchemy import select

    from semwh.warehouse.models import Concept

    with wh.session() as session:
        rows = session.execute(
            select(
                Concept.concept,
                Concept.name,
                Concept.wnid,
                Concept.lexname,
                Concept.hypernym_path,
                Concept.attributes,
            )
        ).all()
    info = {}
    for concept, name, wnid, lexname, path, attributes in rows:
        info[concept] = {
            "name": name,
            "wnid": wnid,
            "lexname": lexname,
            "hypernym_path": json.loads(path) if path else None,
            "attributes": json.loads(attributes) if attributes else {},
        }
    return info


def order_concepts(
    concepts: Sequence[str], info: dict[str, dict[str, Any]], order: str = "auto"
) -> tuple[list[str], list[str], str]:
    """The concepts in the order of ``order``, each one's group, and the order in words.

    ``order``: one of :data:`BUILT_IN_ORDERS` or a column of the concept file (kept in
    ``concepts.attributes``). Concepts sort by the attribute's value (those without one
    last), then by id.

    Raises:
        ConfigError: An unknown attribute, or ``wordnet`` when no concept has a hypernym path.
    """
    attributes = sorted({k for c in concepts for k in info.get(c, {}).get("attributes", {})})
    if order == "auto":
        if any(info.get(c, {}).get("hypernym_path") for c in concepts):
            order = "wordnet"
        else:
            order = "category" if "category" in attributes else "concept"
    if order not in BUILT_IN_ORDERS and order not in attributes:
        choices = ", ".join([*BUILT_IN_ORDERS, *attributes])
        raise ConfigError(f"unknown order {order!r} for the concepts (choose {choices})")

    def value(concept: str) -> Any:
        found = info.get(concept, {})
        if order == "concept":
            return concept
        if order == "wordnet":
            return found.get("hypernym_path")
        if order in ("lexname", "name"):
            return found.get(order)
        return found.get("attributes", {}).get(order)

    if order == "wordnet":
        known = sum(1 for c in concepts if value(c))
        if not known:
            raise ConfigError(
                "no concept of this space has a WordNet hypernym path (WordNet was not read "
                "at ingest); order by an attribute instead: "
                f"{', '.join([*BUILT_IN_ORDERS[2:], *attributes])}"
            )
        ordered = sorted(concepts, key=lambda c: (value(c) is None, value(c) or [], c))
        groups = [str(info.get(c, {}).get("lexname") or "") for c in ordered]
        words = "WordNet hypernym order" + (
            "" if known == len(concepts) else f" ({known} of {len(concepts)} known; rest by id)"
        )
        return ordered, groups, words
    ordered = sorted(concepts, key=lambda c: (value(c) is None, str(value(c) or ""), c))
    if order == "concept":
        return ordered, ["" for _ in ordered], "concepts by id"
    groups = ["" if value(c) is None else str(value(c)) for c in ordered]
    return ordered, groups, f"concepts ordered by {order!r}"


def space_rdm(wh: Warehouse, space: str, order: str = "auto") -> OrderedRDM:
    """The concept-level RDM of ``space`` (1 - Pearson r of its concept vectors; an RDM
    space's subjects' mean), concepts in the order of ``order`` (:func:`order_concepts`).

    Raises:
        NotFoundError: An unknown space.
        ConfigError: An unknown order.
        DegenerateInputError: A constant or non-finite concept vector.
    """
    from semwh.analyze.similarity import similarity_matrix
    from semwh.runs.comparison import rdm_stack
    from semwh.vectors import load_space

    loaded = load_space(wh, space)
    concepts, groups, words = order_concepts(loaded.concept_ids, _concept_info(wh), order)
    if loaded.kind == "rdm":
        matrix = rdm_stack(loaded, concepts).mean(axis=0)
        what = f"mean dissimilarity of its {len(loaded.subjects or ())} subjects"
    else:
        vectors = loaded.subset(concepts)
        matrix = 1.0 - similarity_matrix(vectors, metric="pearson", labels=concepts, space=space)
        what = "1 - Pearson r"
    return OrderedRDM(space, concepts, groups, matrix, what, words)


def classical_mds(dissimilarities: np.ndarray, dims: int = 2) -> tuple[np.ndarray, float]:
    """Classical (Torgerson) multidimensional scaling of a symmetric dissimilarity matrix.

    Double-centres the squared dissimilarities and keeps the ``dims`` largest eigenvectors,
    scaled by the square roots of their eigenvalues: distances of a Euclidean configuration
    come back exactly (up to rotation, reflection and translation).

    Returns:
        The n x dims coordinates and the share of the positive eigenvalues they keep.

    Raises:
        DegenerateInputError: Not a square symmetric matrix of finite values, or fewer than
            ``dims + 1`` items.
    """
    d = np.asarray(dissimilarities, dtype=np.float64)
    n = d.shape[0]
    if d.ndim != 2 or d.shape != (n, n) or n <= dims or not np.all(np.isfinite(d)):
        raise DegenerateInputError(
            f"MDS needs a square matrix of finite dissimilarities over more than {dims} "
            f"items (got shape {d.shape})"
        )
    if not np.allclose(d, d.T):
        raise DegenerateInputError("MDS needs a symmetric dissimilarity matrix")
    centre = np.eye(n) - 1.0 / n
    b = -0.5 * centre @ (d**2) @ centre
    values, vectors = np.linalg.eigh((b + b.T) / 2)
    top = np.argsort(values)[::-1][:dims]
    kept = np.clip(values[top], 0.0, None)
    coords = vectors[:, top] * np.sqrt(kept)
    positive = values[values > 0].sum()
    # One sign per axis (the largest loading positive): the same input gives the same plot.
    signs = np.sign(coords[np.abs(coords).argmax(axis=0), range(dims)])
    coords *= np.where(signs == 0, 1.0, signs)
    return coords, float(kept.sum() / positive) if positive > 0 else 0.0


def layer_similarity(wh: Warehouse, model: str, measure: str = "cka") -> LayerMatrix:
    """Every pair of ``model``'s layers compared with ``measure`` (``cka``: linear CKA with
    its default estimator; ``rsa``: RSA with its default similarity and correlation), over
    the concepts all its layers share, through the same planning and measure code as every
    stored comparison (no permutations: only the statistics).

    Raises:
        ConfigError: An unknown measure.
        NotFoundError: A model without layer spaces.
        DegenerateInputError: A model with one layer space.
    """
    from semwh.measures import get
    from semwh.runs.comparison import content_hashes, plan_comparison, run_comparison
    from semwh.vectors import LAYER_KINDS, layer_spaces, load_space

    if measure not in LAYER_MEASURES:
        raise ConfigError(
            f"unknown measure {measure!r} for a layer x layer matrix (choose "
            f"{', '.join(LAYER_MEASURES)})"
        )
    with wh.session() as session:
        names = [s.name for s in layer_spaces(session, model, LAYER_KINDS)]
    if not names:
        raise NotFoundError(
            f"model {model!r} has no layer spaces: run `semwh extract` (or `semwh embed`) first"
        )
    if len(names) < 2:
        raise DegenerateInputError(
            f"model {model!r} has one layer space ({names[0]}): a layer x layer matrix needs "
            "at least two; extract more layers (`semwh extract --layers`)"
        )
    spaces = [load_space(wh, name) for name in names]
    shared = set(spaces[0].concept_ids).intersection(*(s.concept_ids for s in spaces[1:]))
    concepts = sorted(shared)
    options = get(measure).make_options()
    hashes = content_hashes(wh, *names)
    k = len(spaces)
    matrix = np.empty((k, k))
    for i in range(k):
        for j in range(i, k):
            spec = plan_comparison(
                spaces[i],
                spaces[j],
                options,
                {names[i]: hashes[names[i]], names[j]: hashes[names[j]]},
                concept_ids=concepts,
            )
            matrix[i, j] = matrix[j, i] = run_comparison(spec).statistic
    return LayerMatrix(model, names, matrix, measure, options.variant, len(concepts))


def _short(space: str) -> str:
    return space.split("/", 1)[1] if "/" in space else space


def _group_spans(groups: Sequence[str]) -> list[tuple[str, int, int]]:
    """Runs of equal consecutive groups: (group, first, last)."""
    spans: list[tuple[str, int, int]] = []
    for i, g in enumerate(groups):
        if spans and spans[-1][0] == g:
            spans[-1] = (g, spans[-1][1], i)
        else:
            spans.append((g, i, i))
    return spans


def _labels(rdm: OrderedRDM, info: dict[str, dict[str, Any]]) -> list[str]:
    return [str(info.get(c, {}).get("name") or c) for c in rdm.concepts]


def rdm_figure(
    wh: Warehouse,
    space: str,
    out_dir: Path,
    *,
    order: str = "auto",
    protected: Sequence[Path] = (),
    replace: bool = True,
) -> Figure:
    """Draw :func:`space_rdm` as a figure (``rdm_SPACE.*``), groups of the ordering attribute
    framed along the diagonal; the CSV holds the matrix in the plotted order."""
    rdm = space_rdm(wh, space, order)
    names = _labels(rdm, _concept_info(wh))
    plt = _pyplot()
    n = len(rdm.concepts)
    fig, ax = plt.subplots(figsize=(6.6, 5.8), layout="constrained")
    image = ax.imshow(rdm.matrix, cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=f"dissimilarity ({rdm.what})")
    spans = [s for s in _group_spans(rdm.groups) if s[0]]
    for _, first, last in spans:
        ax.add_patch(
            plt.Rectangle(
                (first - 0.5, first - 0.5),
                last - first + 1,
                last - first + 1,
                fill=False,
                edgecolor="white",
                lw=0.8,
            )  # fmt: skip
        )
    if n <= 60:
        ax.set_xticks(range(n), names, rotation=90, fontsize=5)
        ax.set_yticks(range(n), names, fontsize=5)
    elif spans and len(spans) <= 40:
        middles = [(first + last) / 2 for _, first, last in spans]
        ax.set_yticks(middles, [g for g, _, _ in spans], fontsize=6)
        ax.set_xticks([])
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    title = f"RDM of {space}"
    ax.set_title(f"{title}\n({rdm.order})", fontsize=9)
    caption = (
        f"{title}: {rdm.what} between the concept vectors of {n} concepts, {rdm.order}"
        + (
            f"; white frames: groups of equal {order if order != 'auto' else 'value'}"
            if spans
            else ""
        )
        + "."
    )
    table = [
        {"concept": c, "group": g, **{d: float(v) for d, v in zip(rdm.concepts, line, strict=True)}}
        for c, g, line in zip(rdm.concepts, rdm.groups, rdm.matrix, strict=True)
    ]
    return _save(
        plt, fig, f"rdm_{slug(space)}", title, out_dir, protected,
        caption=caption, table=table, replace=replace,
    )  # fmt: skip


def mds_figure(
    wh: Warehouse,
    space: str,
    out_dir: Path,
    *,
    order: str = "auto",
    protected: Sequence[Path] = (),
    replace: bool = True,
) -> Figure:
    """Classical MDS of the space's RDM (:func:`space_rdm`, :func:`classical_mds`) in two
    dimensions (``mds_SPACE.*``), points coloured by the ordering attribute's groups."""
    rdm = space_rdm(wh, space, order)
    coords, kept = classical_mds(rdm.matrix, 2)
    info = _concept_info(wh)
    names = _labels(rdm, info)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 5.4), layout="constrained")
    groups = list(dict.fromkeys(rdm.groups))
    coloured = [g for g in groups if g]
    for group in groups:
        pick = [i for i, g in enumerate(rdm.groups) if g == group]
        colour = PALETTE[coloured.index(group) % len(PALETTE)] if group else "0.5"
        ax.scatter(
            coords[pick, 0], coords[pick, 1], s=16, color=colour,
            label=group or "(none)", edgecolors="white", linewidths=0.3,
        )  # fmt: skip
    if len(names) <= 40:
        for (x, y), name in zip(coords, names, strict=True):
            ax.annotate(name, (x, y), fontsize=5.5, xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel("MDS dimension 1")
    ax.set_ylabel("MDS dimension 2")
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(alpha=0.25, lw=0.5)
    if coloured and len(groups) <= 12:
        fig.legend(loc="outside lower center", ncol=min(4, len(groups)), fontsize=7, frameon=False)
    title = f"MDS of {space}"
    ax.set_title(f"{title} ({rdm.order})", fontsize=9)
    caption = (
        f"{title}: classical (Torgerson) MDS of the RDM ({rdm.what}) of {len(names)} concepts "
        f"in two dimensions, keeping {100 * kept:.1f}% of the positive eigenvalues; colours: "
        f"{rdm.order}."
    )
    table = [
        {"concept": c, "group": g, "x": float(x), "y": float(y)}
        for c, g, (x, y) in zip(rdm.concepts, rdm.groups, coords, strict=True)
    ]
    return _save(
        plt, fig, f"mds_{slug(space)}", title, out_dir, protected,
        caption=caption, table=table, replace=replace,
    )  # fmt: skip


def layers_figure(
    wh: Warehouse,
    model: str,
    out_dir: Path,
    *,
    measure: str = "cka",
    protected: Sequence[Path] = (),
    replace: bool = True,
) -> Figure:
    """The model's layer x layer matrix (:func:`layer_similarity`) as a figure
    (``layers_MODEL_MEASURE.*``); the CSV holds the matrix."""
    found = layer_similarity(wh, model, measure)
    labels = [_short(n) for n in found.layers]
    plt = _pyplot()
    k = len(labels)
    side = min(11.0, max(4.5, 0.32 * k + 2.5))
    fig, ax = plt.subplots(figsize=(side + 1.0, side), layout="constrained")
    low = min(0.0, float(found.matrix.min()))
    image = ax.imshow(found.matrix, cmap="viridis", vmin=low, vmax=1.0, interpolation="nearest")
    what = "linear CKA" if measure == "cka" else "RSA"
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=f"{what} ({found.variant})")
    ax.set_xticks(range(k), labels, rotation=60, ha="right", fontsize=7 if k <= 20 else 5.5)
    ax.set_yticks(range(k), labels, fontsize=7 if k <= 20 else 5.5)
    if k <= 12:
        for i in range(k):
            for j in range(k):
                v = found.matrix[i, j]
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                        color="black" if v > (low + 1) / 2 else "white")  # fmt: skip
    title = f"{what} between the layers of {model}"
    ax.set_title(title, fontsize=9)
    caption = (
        f"{title} ({found.variant}), every pair of its {k} layers over the "
        f"{found.n_concepts} concepts they share, computed with semwh's {measure} measure "
        "(the statistic only, no permutation test); layers in depth order."
    )
    table = [
        {"layer": a, **{b: float(v) for b, v in zip(found.layers, line, strict=True)}}
        for a, line in zip(found.layers, found.matrix, strict=True)
    ]
    return _save(
        plt, fig, f"layers_{slug(model)}_{measure}", title, out_dir, protected,
        caption=caption, table=table, replace=replace,
    )  # fmt: skip


def _plot(
    wh: Warehouse,
    key: str,
    out_dir: Path,
    force: bool,
    draw: Any,
) -> Figure:
    """Check the four files of figure ``key`` against the rule of user outputs (outside the
    warehouse; an existing file only with ``force``) before anything is drawn, then draw."""
    from semwh.results.output import check_output

    for ext in ("png", "pdf", "svg", "csv"):
        check_output(out_dir / f"{key}.{ext}", wh.protected_paths, force=force)
    return draw(protected=wh.protected_paths, replace=force)


def _plot_space(
    wh: Warehouse, kind: str, figure: Any, space: str, out_dir: Path, order: str, force: bool
) -> Figure:
    """:func:`_plot` of the space figure ``kind`` (``rdm`` or ``mds``) drawn by ``figure``."""
    return _plot(
        wh,
        f"{kind}_{slug(space)}",
        out_dir,
        force,
        lambda **kw: figure(wh, space, out_dir, order=order, **kw),
    )


def plot_rdm(
    wh: Warehouse, space: str, out_dir: Path, *, order: str = "auto", force: bool = False
) -> Figure:
    """Write ``rdm_SPACE.png|pdf|svg|csv`` into ``out_dir`` (:func:`rdm_figure`).

    Raises:
        NotFoundError: An unknown space.
        ConfigError: An unknown order.
        OutputError: A file inside the warehouse, or one that exists without ``force``.
    """
    return _plot_space(wh, "rdm", rdm_figure, space, out_dir, order, force)


def plot_mds(
    wh: Warehouse, space: str, out_dir: Path, *, order: str = "auto", force: bool = False
) -> Figure:
    """Write ``mds_SPACE.png|pdf|svg|csv`` into ``out_dir`` (:func:`mds_figure`); raises as
    :func:`plot_rdm` does."""
    return _plot_space(wh, "mds", mds_figure, space, out_dir, order, force)


def plot_layers(
    wh: Warehouse, model: str, out_dir: Path, *, measure: str = "cka", force: bool = False
) -> Figure:
    """Write ``layers_MODEL_MEASURE.png|pdf|svg|csv`` into ``out_dir`` (:func:`layers_figure`).

    Raises:
        NotFoundError: A model without layer spaces.
        ConfigError: An unknown measure.
        OutputError: A file inside the warehouse, or one that exists without ``force``.
    """
    if measure not in LAYER_MEASURES:
        raise ConfigError(
            f"unknown measure {measure!r} for a layer x layer matrix (choose "
            f"{', '.join(LAYER_MEASURES)})"
        )
    return _plot(
        wh,
        f"layers_{slug(model)}_{measure}",
        out_dir,
        force,
        lambda **kw: layers_figure(wh, model, out_dir, measure=measure, **kw),
    )


__all__ = [
    "plot_layers",
    "plot_mds",
    "plot_rdm",
    "BUILT_IN_ORDERS",
    "LAYER_MEASURES",
    "LayerMatrix",
    "OrderedRDM",
    "classical_mds",
    "layer_similarity",
    "layers_figure",
    "mds_figure",
    "order_concepts",
    "rdm_figure",
    "space_rdm",
]
