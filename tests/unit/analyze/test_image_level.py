"""Image-level comparisons against loops written out here: statistics, the null of each
permutation scheme, bootstrap intervals over concepts or images, and a simulation of each
scheme's rejection rate under its own null."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from scipy import stats

from semwh.errors import ConfigError
from semwh.measures import get
from semwh.measures.spec import ComparisonSpec
from semwh.runs.comparison import (
    comparison_null,
    concept_bootstrap_values,
    plan_comparison,
    run_comparison,
)
from semwh.runs.levels import Items
from semwh.seeds import derive_seed
from semwh.vectors import SpaceVectors
from tests.unit.analyze import reference

SCHEMES = ("concepts", "images", "within-concept")


def interleaved(sizes: list[int], seed: int) -> list[str]:
    """Each item's concept: concept k has sizes[k] images, in a shuffled item order."""
    labels = [f"c{k}" for k, size in enumerate(sizes) for _ in range(size)]
    return [str(c) for c in np.random.default_rng(seed).permutation(labels)]


#: 22 images of 9 concepts: four of 2 images, three of 3, one of 1, one of 4 (these two
#: stay under the concepts scheme, which has 4! 3! = 144 relabellings).
CONCEPTS = interleaved([2, 2, 2, 2, 3, 3, 3, 1, 4], seed=0)
#: 12 images of 6 concepts for CKA, whose loop visits every 4-tuple of items.
SMALL = interleaved([2, 2, 2, 2, 1, 3], seed=1)


def stimuli(concepts: list[str]) -> list[str]:
    # Zero-padded, so sorted like the rows: the spec's item order is the rows' order.
    return [f"s{i:03d}" for i in range(len(concepts))]


def space(name: str, matrix: np.ndarray, concepts: list[str], **kind: object) -> SpaceVectors:
    return SpaceVectors(
        name,
        stimuli(concepts),
        np.asarray(matrix, dtype=np.float64),
        level="image",
        item_concepts=tuple(concepts),
        **kind,  # type: ignore[arg-type]
    )


def make_spec(
    test: str,
    x: np.ndarray,
    y: np.ndarray,
    concepts: list[str],
    permute: str | None = None,
    resample: str | None = None,
    **options: Any,
) -> ComparisonSpec:
    return plan_comparison(
        space("A", x, concepts),
        space("B", y, concepts),
        get(test).make_options(**options),
        {"A": None, "B": None},
        items=Items("image", permute, resample),
    )


def data(concepts: list[str], seed: int, d: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """A and B with concept structure, exemplar structure and noise."""
    rng = np.random.default_rng(seed)
    codes = np.unique(concepts, return_inverse=True)[1]
    x = rng.standard_normal((codes.max() + 1, d))[codes] + rng.standard_normal((codes.size, d))
    return x, x @ rng.standard_normal((d, d)) + 1.5 * rng.standard_normal((codes.size, d))


# -- the slow references: loops over items and pairs ------------------------------------------


def similarity(x: np.ndarray) -> np.ndarray:
    """Pearson correlation of every two items' vectors, one pair at a time."""
    n = len(x)
    s = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            s[i, j] = reference.pearson(x[i], x[j])
    return s


def rsa(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman correlation of the similarities of every pair i < j of items."""
    a, b = similarity(x), similarity(y)
    pairs = list(itertools.combinations(range(len(x)), 2))
    return float(stats.spearmanr([a[p] for p in pairs], [b[p] for p in pairs]).statistic)


def two_vs_two_correct(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether each pair i < j matches the right way round (DESIGN's words, tie 1e-10)."""
    a, b = similarity(x), similarity(y)
    n = len(x)
    correct = np.zeros((n, n), dtype=bool)
    for i, j in itertools.combinations(range(n), 2):
        keep = [k for k in range(n) if k not in (i, j)]
        a_i, a_j, b_i, b_j = a[i, keep], a[j, keep], b[i, keep], b[j, keep]
        right = (1.0 - reference.pearson(a_i, b_i)) + (1.0 - reference.pearson(a_j, b_j))
        wrong = (1.0 - reference.pearson(a_i, b_j)) + (1.0 - reference.pearson(a_j, b_i))
        correct[i, j] = correct[j, i] = right < wrong - 1e-10
    return correct


def two_vs_two(x: np.ndarray, y: np.ndarray) -> float:
    correct = two_vs_two_correct(x, y)
    pairs = list(itertools.combinations(range(len(x)), 2))
    return sum(bool(correct[p]) for p in pairs) / len(pairs)


SLOW = {"rsa": rsa, "2v2": two_vs_two, "cka": reference.cka}


def inputs(test: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    concepts = SMALL if test == "cka" else CONCEPTS
    return (*data(concepts, seed=5), concepts)


# -- statistics and nulls -----------------------------------------------------------------------


@pytest.mark.parametrize("test", ["rsa", "2v2", "cka"])
def test_statistic_equals_a_loop_over_images(test: str) -> None:
    x, y, concepts = inputs(test)
    spec = make_spec(test, x, y, concepts)
    assert (spec.level, spec.n_items, spec.n_distinct_concepts) == (
        "image",
        len(concepts),
        len(set(concepts)),
    )
    assert (spec.permute, spec.resample) == ("concepts", "concepts")
    record = run_comparison(spec)
    assert record.statistic == pytest.approx(SLOW[test](x, y), abs=1e-9)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("test", ["rsa", "2v2", "cka"])
def test_null_of_each_scheme_equals_a_naive_loop(test: str, scheme: str) -> None:
    """Draw the scheme's relabellings from a fresh Generator of the seed, relabel B's rows,
    recompute the statistic with the loop: the stored null, and its blocks."""
    x, y, concepts = inputs(test)
    count = 6 if test == "cka" else 10
    spec = make_spec(test, x, y, concepts, permute=scheme, permutations=count, seed=11)
    assert spec.permute == scheme
    record = run_comparison(spec)
    rng = np.random.default_rng(11)
    expected = []
    for _ in range(count):
        perm = reference.scheme_permutation(rng, concepts, scheme)
        expected.append(SLOW[test](x, y[perm]))
    assert record.null is not None
    np.testing.assert_allclose(record.null, np.array(expected), rtol=0, atol=1e-9)
    assert record.p_value == pytest.approx(reference.p_value(record.statistic, expected))
    blocks = [comparison_null(spec, 0, 4), comparison_null(spec, 4, count)]
    np.testing.assert_array_equal(np.concatenate(blocks), record.null)


def test_concept_level_null_is_the_free_stream() -> None:
    """At the concept level nothing changes: no design, one rng.permutation(n) per
    permutation, as before image levels existed."""
    x, y, concepts = inputs("rsa")
    ids = stimuli(concepts)
    spec = plan_comparison(
        SpaceVectors("A", ids, x),
        SpaceVectors("B", ids, y),
        get("rsa").make_options(permutations=10, seed=31),
        {"A": None, "B": None},
    )
    assert spec.design is None and spec.level == "concept"
    expected = [rsa(x, y[perm]) for perm in reference.permutations(31, len(ids), 10)]
    record = run_comparison(spec)
    assert record.null is not None
    np.testing.assert_allclose(record.null, np.array(expected), rtol=0, atol=1e-9)


# -- bootstrap -----------------------------------------------------------------------------------


def resampled_rsa(a: np.ndarray, b: np.ndarray, idx: np.ndarray) -> float:
    """RSA over the pairs of places of a resample holding two different items."""
    u, v = [], []
    for p, q in itertools.combinations(range(len(idx)), 2):
        if idx[p] != idx[q]:
            u.append(a[idx[p], idx[q]])
            v.append(b[idx[p], idx[q]])
    return float(stats.spearmanr(u, v).statistic)


def resampled_two_vs_two(correct: np.ndarray, idx: np.ndarray) -> float:
    """2 vs 2 accuracy over the pairs of places of a resample holding two different items
    (each pair decided on all items)."""
    pairs = [(idx[p], idx[q]) for p, q in itertools.combinations(range(len(idx)), 2)]
    decided = [bool(correct[i, j]) for i, j in pairs if i != j]
    return sum(decided) / len(decided)


@pytest.mark.parametrize("unit", ["concepts", "images"])
@pytest.mark.parametrize("test", ["rsa", "2v2"])
def test_bootstrap_resamples_the_design_unit(test: str, unit: str) -> None:
    x, y, concepts = inputs(test)
    spec = make_spec(test, x, y, concepts, resample=unit, bootstrap=40, seed=13)
    record = run_comparison(spec)
    a, b = similarity(x), similarity(y)
    correct = two_vs_two_correct(x, y) if test == "2v2" else None
    rng = np.random.default_rng(derive_seed(13, "bootstrap"))
    values = []
    for _ in range(40):
        idx = reference.scheme_rows(rng, concepts, unit)
        if correct is None:
            values.append(resampled_rsa(a, b, idx))
        else:
            values.append(resampled_two_vs_two(correct, idx))
    low, high = np.quantile(values, [0.025, 0.975])
    assert (record.ci_low, record.ci_high) == (
        pytest.approx(low, abs=1e-9),
        pytest.approx(high, abs=1e-9),
    )
    drawn = concept_bootstrap_values(spec, 40, derive_seed(13, "bootstrap"))
    np.testing.assert_allclose(drawn, values, rtol=0, atol=1e-9)


def test_vector_measure_resamples_take_each_drawn_image_once() -> None:
    """A measure of vectors (CKA) on resamples of whole concepts (a peak layer's depth
    interval): the distinct images of the drawn concepts, in item order."""
    x, y, concepts = inputs("cka")
    spec = make_spec("cka", x, y, concepts, resample="concepts")
    rng = np.random.default_rng(29)
    expected = []
    for _ in range(8):
        rows = sorted(set(reference.scheme_rows(rng, concepts, "concepts").tolist()))
        expected.append(reference.cka(x[rows], y[rows]) if len(rows) >= 4 else np.nan)
    drawn = concept_bootstrap_values(spec, 8, 29)
    np.testing.assert_allclose(drawn, np.array(expected), rtol=0, atol=1e-9)


def corrected_interval(
    evaluations: np.ndarray, estimate: float, n_subjects: int, n_units: int
) -> tuple[float, float]:
    """rsatoolbox's dual-bootstrap interval from the (both, subjects, units) resampled means
    over n_subjects subjects and n_units resampled units."""
    v_both, v_s, v_c = np.var(evaluations, axis=1, ddof=1)
    ks, kc = n_subjects / (n_subjects - 1), n_units / (n_units - 1)
    variance = ks * v_s + kc * v_c - ks * kc * (v_both - v_s - v_c)
    variance = min(max(variance, ks * v_s, kc * v_c), v_both)
    half = stats.t.ppf(0.975, min(n_subjects, n_units) - 1) * np.sqrt(variance)
    return estimate - half, estimate + half


def test_subject_bootstrap_resamples_whole_concepts() -> None:
    """Against an RDM target with subjects, the concept interval of the subjects' mean RSA
    draws whole concepts (a resample of unequal concepts holds fewer or more than n images),
    and the dual interval counts the concepts as its resampled units."""
    x, y, concepts = inputs("rsa")
    rng = np.random.default_rng(17)
    rdms = [1.0 - similarity(y + rng.standard_normal(y.shape)) for _ in range(3)]
    target = space(
        "T", np.concatenate(rdms, axis=1), concepts, kind="rdm", subjects=("p1", "p2", "p3")
    )
    spec = plan_comparison(
        space("A", x, concepts),
        target,
        get("rsa").make_options(bootstrap=20, seed=19),
        {"A": None, "T": None},
        items=Items("image", resample="concepts"),
    )
    record = run_comparison(spec)
    interval = record.extra["intervals"]["bootstrap_concepts"]
    a = similarity(x)
    draws = np.random.default_rng(derive_seed(19, "bootstrap"))
    expected = []
    for _ in range(20):
        idx = reference.scheme_rows(draws, concepts, "concepts")
        expected.append(np.mean([resampled_rsa(a, -rdm, idx) for rdm in rdms]))
    np.testing.assert_allclose(interval.values, expected, rtol=0, atol=1e-9)

    every = np.arange(len(concepts))
    values = np.array([resampled_rsa(a, -rdm, every) for rdm in rdms])
    np.testing.assert_allclose(record.extra["subject_values"], values, rtol=0, atol=1e-9)
    draws = np.random.default_rng(derive_seed(19, "dual-bootstrap"))
    evaluations = []
    for _ in range(20):
        subjects = draws.integers(0, 3, size=3)
        idx = reference.scheme_rows(draws, concepts, "concepts")
        per_subject = np.array([resampled_rsa(a, -rdm, idx) for rdm in rdms])
        evaluations.append(
            [per_subject[subjects].mean(), values[subjects].mean(), per_subject.mean()]
        )
    low, high = corrected_interval(np.array(evaluations).T, values.mean(), 3, len(set(concepts)))
    dual = record.extra["intervals"]["bootstrap_dual"]
    assert (dual.low, dual.high) == (pytest.approx(low, abs=1e-9), pytest.approx(high, abs=1e-9))


# -- calibration ---------------------------------------------------------------------------------

#: 24 images of 10 concepts: five of 3 images, four of 2, one of 1.
CALIBRATION = interleaved([3, 3, 3, 3, 3, 2, 2, 2, 2, 1], seed=2)
#: Datasets per null, permutations per test (p = (1 + #{null >= rho}) / 40 is at most 0.05
#: for exactly 2 of the 40 equally likely ranks of the observed statistic: size 0.05).
DATASETS, PERMUTATIONS, ALPHA = 200, 39, 0.05
#: Rejections within 3 standard errors of ALPHA * DATASETS.
BAND = 3 * np.sqrt(ALPHA * (1 - ALPHA) * DATASETS)

Pair = tuple[np.ndarray, np.ndarray]
#: Draws one dataset (A, B) from a Generator, given each image's concept code.
Simulate = Callable[[np.random.Generator, np.ndarray], Pair]


def rejections(scheme: str, simulate: Simulate, datasets: int = DATASETS) -> int:
    """How many of the simulated datasets the RSA permutation test rejects at ALPHA."""
    rng = np.random.default_rng(23)
    codes = np.unique(CALIBRATION, return_inverse=True)[1]
    count = 0
    for k in range(datasets):
        x, y = simulate(rng, codes)
        spec = make_spec(
            "rsa", x, y, CALIBRATION, permute=scheme, permutations=PERMUTATIONS, seed=k
        )
        p_value = run_comparison(spec).p_value
        assert p_value is not None
        count += p_value <= ALPHA
    return count


def independent_images(rng: np.random.Generator, codes: np.ndarray) -> Pair:
    """The null of ``images``: A and B independent, every image on its own."""
    return rng.standard_normal((codes.size, 5)), rng.standard_normal((codes.size, 5))


def independent_concepts(rng: np.random.Generator, codes: np.ndarray) -> Pair:
    """The null of ``concepts``: each space has concept structure (images of one concept
    alike), but A's and B's concepts are independent."""

    def one() -> np.ndarray:
        means = rng.standard_normal((codes.max() + 1, 5))
        return means[codes] + 0.7 * rng.standard_normal((codes.size, 5))

    return one(), one()


def category_only(rng: np.random.Generator, codes: np.ndarray) -> Pair:
    """The null of ``within-concept``: A and B share their concepts' structure, and B holds
    nothing of A's images beyond it (its own noise around the concept means)."""
    means = rng.standard_normal((codes.max() + 1, 5))
    x = means[codes] + 0.7 * rng.standard_normal((codes.size, 5))
    return x, means[codes] + 0.7 * rng.standard_normal((codes.size, 5))


def exemplars_shared(rng: np.random.Generator, codes: np.ndarray) -> Pair:
    """Not a null of ``within-concept``: B follows A's images, not only their concepts."""
    x, _ = category_only(rng, codes)
    return x, x + 0.5 * rng.standard_normal(x.shape)


@pytest.mark.parametrize(
    ("scheme", "simulate"),
    [
        ("images", independent_images),
        ("concepts", independent_concepts),
        ("within-concept", category_only),
    ],
)
def test_each_scheme_rejects_at_alpha_under_its_null(scheme: str, simulate: Simulate) -> None:
    rejected = rejections(scheme, simulate)
    assert abs(rejected - ALPHA * DATASETS) <= BAND, rejected


def test_free_image_relabelling_is_anti_conservative_under_concept_structure() -> None:
    """Images of one concept alike in each space, the spaces independent: relabelling images
    freely rejects far more often than alpha (what the concepts scheme is for)."""
    assert rejections("images", independent_concepts, 50) > 4 * ALPHA * 50


def test_within_concept_scheme_rejects_when_b_carries_exemplars() -> None:
    assert rejections("within-concept", exemplars_shared, 50) > 0.8 * 50


def test_a_scheme_with_too_few_relabellings_is_refused_with_the_alternatives() -> None:
    """Every concept has a number of images no other has: whole concepts cannot exchange,
    and the message says which schemes can (and that -n 0 needs none)."""
    concepts = [f"k{size}" for size in range(1, 8) for _ in range(size)]
    x, y = data(concepts, seed=3)
    with pytest.raises(
        ConfigError,
        match=r"--permute concepts .* allows 1 distinct .* 7 of 7 concepts .* choose --permute "
        r"images .* or within-concept .* or run without permutations \(-n 0\)",
    ):
        make_spec("rsa", x, y, concepts, "concepts", permutations=20, seed=1)
    # Not asked for, the scheme is named as the default.
    with pytest.raises(ConfigError, match=r"^the default scheme \(concepts\) over the 28 stimuli"):
        make_spec("rsa", x, y, concepts, permutations=20, seed=1)
    assert make_spec("rsa", x, y, concepts, permutations=0, seed=1).permute == "concepts"
    assert make_spec("rsa", x, y, concepts, "within-concept", permutations=20, seed=1).n_items == 28
