"""1 vs 2 recovery against a per-image loop written from DESIGN's wording."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from semwh.analyze import recovery
from semwh.errors import DegenerateInputError, InputError


def reference_recovery(x, t_all, p_all, words, wvec):
    """Per image, straight from the definition, with scipy's pearsonr."""
    word_row = {c: i for i, c in enumerate(words)}
    k_concepts = [c for c in words if c in set(t_all)]
    out = []
    for i, (t, p) in enumerate(zip(t_all, p_all, strict=True)):
        if t == p or t not in word_row or p not in word_row:
            continue
        others = [j for j, c in enumerate(t_all) if c == t and j != i]
        if not others:
            continue
        e = x[i]

        def mean_of(k, i=i):
            return np.mean([x[j] for j, c in enumerate(t_all) if c == k and j != i], axis=0)

        r_all = {k: stats.pearsonr(e, mean_of(k)).statistic for k in k_concepts}
        kept = [k for k in k_concepts if k not in (t, p)]
        r = [r_all[k] for k in kept]
        w_t = [stats.pearsonr(wvec[word_row[t]], wvec[word_row[k]]).statistic for k in kept]
        w_p = [stats.pearsonr(wvec[word_row[p]], wvec[word_row[k]]).statistic for k in kept]
        s_t, s_p = stats.pearsonr(r, w_t).statistic, stats.pearsonr(r, w_p).statistic
        visual = p in r_all
        out.append(
            dict(
                index=i,
                success=s_t > s_p,
                s_t=s_t,
                s_p=s_p,
                visual_defined=visual,
                visual=visual and r_all[t] > r_all[p],
                rank=1 + sum(r_all[k] > r_all[t] for k in k_concepts),
            )
        )
    return out


def make_data(seed: int):
    rng = np.random.default_rng(seed)
    concepts = [f"n{i:02d}" for i in range(9)]
    # n08 has a single image; n07 has images but no word vector; w1/w2 have only words.
    t_all = [c for c in concepts[:8] for _ in range(3)] + ["n08"]
    words = ["w1", *concepts[:7], "n08", "w2"]
    wvec = rng.standard_normal((len(words), 5))
    centres = rng.standard_normal((9, 12))
    x = np.array([centres[concepts.index(c)] for c in t_all]) + rng.standard_normal(
        (len(t_all), 12)
    )
    p_all = list(rng.choice(concepts + ["w1", "w2"], size=len(t_all)))
    return x, t_all, p_all, words, wvec


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference(seed: int) -> None:
    x, t_all, p_all, words, wvec = make_data(seed)
    result = recovery(x, t_all, p_all, words, wvec, image_ids=np.arange(100, 100 + len(t_all)))
    expected = reference_recovery(x, t_all, p_all, words, wvec)
    got = result.outcomes
    assert list(got.image_index) == [e["index"] for e in expected]
    assert list(got.image_id) == [100 + e["index"] for e in expected]
    np.testing.assert_allclose(got.score_true, [e["s_t"] for e in expected], atol=1e-9)
    np.testing.assert_allclose(got.score_predicted, [e["s_p"] for e in expected], atol=1e-9)
    assert list(got.success) == [e["success"] for e in expected]
    assert list(got.visual_defined) == [e["visual_defined"] for e in expected]
    assert list(got.visual_success) == [e["visual"] for e in expected]
    assert list(got.rank_true) == [e["rank"] for e in expected]
    n = len(expected)
    k = sum(e["success"] for e in expected)
    assert result.n_images == n and result.n_success == k
    assert result.p_value == pytest.approx(stats.binomtest(k, n, 0.5, "greater").pvalue)
    assert result.n_concepts == 8  # n00..n06 and n08
    assert result.n_misclassified == sum(t != p for t, p in zip(t_all, p_all, strict=True))
    single = [i for i, t in enumerate(t_all) if t == "n08" and p_all[i] in words and p_all[i] != t]
    assert result.n_skipped_single_image == len(single)
    assert result.mean_rank == pytest.approx(np.mean([e["rank"] for e in expected]))


def test_images_of_concepts_outside_the_classes_are_not_tested() -> None:
    """With ``classes``, an image of another concept is no misclassification: the outcomes
    are those of the same data where such images are predicted right, and K is unchanged."""
    x, t_all, p_all, words, wvec = make_data(1)
    classes = ["n00", "n01", "n02", "n03", "n08", "w1", "w2"]
    result = recovery(x, t_all, p_all, words, wvec, classes=classes)
    right = [p if t in classes else t for t, p in zip(t_all, p_all, strict=True)]
    same = recovery(x, t_all, right, words, wvec)
    assert result.n_images == same.n_images > 0
    assert list(result.outcomes.image_index) == list(same.outcomes.image_index)
    np.testing.assert_array_equal(result.outcomes.score_true, same.outcomes.score_true)
    assert set(result.outcomes.true_concept) <= set(classes)
    assert result.n_concepts == same.n_concepts == 8
    outside = sum(t != p and t not in classes for t, p in zip(t_all, p_all, strict=True))
    assert result.n_skipped_not_a_class == outside > 0
    assert recovery(x, t_all, p_all, words, wvec).n_images > result.n_images


def test_layer_that_mirrors_word_space_recovers_everything() -> None:
    """Activations built from the word vectors of the true concept: t is always recovered."""
    rng = np.random.default_rng(4)
    words = [f"n{i:02d}" for i in range(12)]
    wvec = rng.standard_normal((12, 30))
    t_all = [c for c in words for _ in range(4)]
    x = np.array([wvec[words.index(c)] for c in t_all]) + 0.05 * rng.standard_normal((48, 30))
    p_all = [words[(words.index(c) + 1) % 12] for c in t_all]
    result = recovery(x, t_all, p_all, words, wvec)
    assert result.n_images == 48
    assert result.success_rate == 1.0 and result.visual_success_rate == 1.0
    assert result.median_rank == 1.0
    assert result.p_value == pytest.approx(0.5**48)


def test_errors_name_images_and_concepts() -> None:
    x, t_all, p_all, words, wvec = make_data(0)
    bad = x.copy()
    bad[4, 1] = np.nan
    with pytest.raises(DegenerateInputError, match=r"'L'.*images 4 \(n01\)"):
        recovery(bad, t_all, p_all, words, wvec, layer="L")
    flat = x.copy()
    flat[3:6] = 1.0  # every image of n01 constant: its mean is constant
    with pytest.raises(DegenerateInputError, match="n01"):
        recovery(flat, t_all, p_all, words, wvec)
    with pytest.raises(InputError, match="one of each per image"):
        recovery(x, t_all[:-1], p_all, words, wvec)
