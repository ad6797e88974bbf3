"""Per-image scores against the concept centroids, checked against a per-image loop written
from the definition."""

from __future__ import annotations

import numpy as np
import pytest

from semwh.analyze.exemplars import TIE_TOL, exemplar_scores
from semwh.errors import ConfigError, DegenerateInputError, InputError


def similarity(u: np.ndarray, v: np.ndarray, metric: str) -> float:
    if metric == "pearson":
        u, v = u - u.mean(), v - v.mean()
    return float(np.dot(u, v) / np.sqrt(np.dot(u, u) * np.dot(v, v)))


def reference_scores(x: np.ndarray, concepts: list[str], metric: str) -> dict[int, dict]:
    """Per image: every centroid computed afresh (its own image left out of its own), then
    the nearest, margin and rank straight from the definition (ties against the image)."""
    keys = sorted(set(concepts))
    out = {}
    for i, t in enumerate(concepts):
        if sum(c == t for c in concepts) < 2:
            continue
        sims = {}
        for k in keys:
            members = [j for j, c in enumerate(concepts) if c == k and j != i]
            sims[k] = similarity(x[i], np.mean(x[members], axis=0), metric)
        others = [k for k in keys if k != t]
        best = max(sims[k] for k in others)
        rank = 1 + sum(1 for k in others if sims[k] >= sims[t] - TIE_TOL)
        nearest = t if rank == 1 else next(k for k in others if sims[k] == best)
        out[i] = dict(
            nearest=nearest,
            correct=rank == 1,
            margin=sims[t] - best,
            rank=rank,
            own=sims[t],
            n_images=sum(c == t for c in concepts),
        )
    return out


def _data(seed: int, n_concepts: int = 7, d: int = 12) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 6, size=n_concepts)
    sizes[0] = 1  # at least one concept with a single image
    concepts = [f"c{k}" for k in range(n_concepts) for _ in range(sizes[k])]
    rng.shuffle(concepts)
    base = {c: rng.normal(size=d) for c in sorted(set(concepts))}
    x = np.stack([base[c] * 0.7 + rng.normal(size=d) for c in concepts])
    return x, concepts


def _check(scores, x, concepts, metric) -> None:  # type: ignore[no-untyped-def]
    ref = reference_scores(x, concepts, metric)
    assert scores.index.tolist() == sorted(ref)
    assert scores.n_skipped == len(concepts) - len(ref)
    names = scores.concepts
    for k, i in enumerate(scores.index.tolist()):
        r = ref[i]
        assert names[scores.concept[k]] == concepts[i]
        assert names[scores.nearest[k]] == r["nearest"]
        assert bool(scores.correct[k]) == r["correct"]
        assert int(scores.rank[k]) == r["rank"]
        assert int(scores.n_images[k]) == r["n_images"]
        assert scores.margin[k] == pytest.approx(r["margin"], abs=1e-9)
        assert scores.own_similarity[k] == pytest.approx(r["own"], abs=1e-9)


@pytest.mark.parametrize("metric", ["pearson", "cosine"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_equal_a_per_image_loop(metric: str, seed: int) -> None:
    x, concepts = _data(seed)
    scores = exemplar_scores(x, concepts, similarity=metric)
    _check(scores, x, concepts, metric)
    assert 0 < scores.correct.sum() < scores.n_scored  # both outcomes are exercised
    assert scores.accuracy == pytest.approx(scores.correct.mean())


def test_tiny_blocks_give_the_same_scores_and_report_progress() -> None:
    x, concepts = _data(5, n_concepts=9)
    whole = exemplar_scores(x, concepts)
    seen: list[tuple[int, int]] = []
    blocked = exemplar_scores(
        x, concepts, block_entries=1, progress=lambda a, b: seen.append((a, b))
    )
    assert len(seen) == whole.n_scored > 1 and seen[-1] == (whole.n_scored, whole.n_scored)
    for field in ("index", "nearest", "rank", "correct"):
        assert np.array_equal(getattr(whole, field), getattr(blocked, field))
    np.testing.assert_allclose(blocked.margin, whole.margin, rtol=0, atol=1e-12)
    _check(blocked, x, concepts, "pearson")


def test_a_tie_counts_against_the_image() -> None:
    rng = np.random.default_rng(3)
    y, e, x0 = rng.normal(size=8), rng.normal(size=8), rng.normal(size=8)
    # For image 0 (concept a), a's centroid without it is y; b's centroid is y too, up to
    # rounding: the two are tied, so a is second and the nearest concept is b (c, opposite
    # to image 0, is far from it).
    x = np.stack([x0, y, y + e, y - e, -x0, -x0 + 0.1 * e])
    concepts = ["a", "a", "b", "b", "c", "c"]
    scores = exemplar_scores(x, concepts)
    first = scores.index.tolist().index(0)
    assert abs(scores.margin[first]) < TIE_TOL
    assert scores.rank[first] == 2 and not scores.correct[first]
    assert scores.concepts[scores.nearest[first]] == "b"
    _check(scores, x, concepts, "pearson")


def test_single_image_concepts_are_skipped_and_still_compete() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(5, 6))
    x[4] = x[0] * 3 + 1  # the only image of "solo": Pearson 1 with image 0
    concepts = ["a", "a", "b", "b", "solo"]
    scores = exemplar_scores(x, concepts)
    assert scores.skipped.tolist() == [4] and scores.index.tolist() == [0, 1, 2, 3]
    assert scores.concepts == ("a", "b", "solo")
    assert scores.concepts[scores.nearest[0]] == "solo" and scores.rank[0] >= 2
    _check(scores, x, concepts, "pearson")
    nothing = exemplar_scores(x[[0, 2, 4]], ["a", "b", "solo"])
    assert nothing.n_scored == 0 and nothing.n_skipped == 3
    assert np.isnan(nothing.accuracy)


def test_degenerate_inputs_name_what_to_fix() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, 5))
    with pytest.raises(DegenerateInputError, match="at least 2 concepts"):
        exemplar_scores(x, ["a"] * 4)
    with pytest.raises(ConfigError, match="choose pearson, cosine"):
        exemplar_scores(x, ["a", "a", "b", "b"], similarity="spearman")
    with pytest.raises(InputError, match="4 image rows but 3 concepts"):
        exemplar_scores(x, ["a", "a", "b"])
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(DegenerateInputError, match="images s2 contain NaN"):
        exemplar_scores(bad, ["a", "a", "b", "b"], labels=["s0", "s1", "s2", "s3"])
    flat = x.copy()
    flat[1] = 2.0
    with pytest.raises(DegenerateInputError, match="images s1 are constant"):
        exemplar_scores(
            np.vstack([flat, x[:2] + 1]), ["a", "a", "b", "b", "c", "c"],
            labels=["s0", "s1", "s2", "s3", "s4", "s5"],
        )  # fmt: skip
    zero = x.copy()
    zero[3] = 0.0
    with pytest.raises(DegenerateInputError, match="centroids of concepts c are zero"):
        exemplar_scores(np.vstack([x, zero[3]]), ["a", "a", "b", "b", "c"], similarity="cosine")
