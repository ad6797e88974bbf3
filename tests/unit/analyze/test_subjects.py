"""Targets with subjects, evaluated the way rsatoolbox evaluates: per-subject statistics
(``eval_fixed``), ceilings with the same comparator (``boot_noise_ceiling``), the subject
bootstrap (``eval_bootstrap_rdm``) and the dual bootstrap (``eval_dual_bootstrap``), all on the
real comparison path (``plan_comparison`` + ``run_comparison``); the tests over subjects reject
at about alpha under a true null; a generating model lies inside its ceiling."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from semwh.analyze import rsa, similarity_matrix, two_vs_two
from semwh.analyze.subjects import (
    Comparator,
    dual_bootstrap,
    normalise_rdms,
    per_subject_resampled,
    sign_flip_test,
    subject_bootstrap,
    subject_ceiling,
    subject_tests,
)
from semwh.errors import ConfigError, DegenerateInputError
from semwh.runs.comparison import plan_comparison, run_comparison
from semwh.runs.options import ComparisonOptions
from semwh.vectors import SpaceVectors

rsatoolbox = pytest.importorskip("rsatoolbox")

# semwh's RSA methods by rsatoolbox's names of the same comparators.
RSATOOLBOX_METHOD = {"spearman": "spearman", "pearson": "corr", "kendall": "tau-a"}


def keys(n: int) -> list[str]:
    return [f"c{i:03d}" for i in range(n)]


def generated(seed: int, n: int = 12, subjects: int = 5, noise: float = 0.8):
    """A layer's vectors and subjects' RDMs of noisy copies of them, on different scales."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6))
    stack = []
    for s in range(subjects):
        y = x + noise * rng.standard_normal(x.shape)
        stack.append((1 + 3 * s) * np.linalg.norm(y[:, None] - y[None], axis=2))
    return x, np.stack(stack)


def rdm_space(stack: np.ndarray, name: str = "fmri") -> SpaceVectors:
    n = stack.shape[1]
    return SpaceVectors(
        name,
        keys(n),
        np.transpose(stack, (1, 0, 2)).reshape(n, -1),
        kind="rdm",
        subjects=tuple(f"sub-{s + 1:02d}" for s in range(len(stack))),
    )


def record(x: np.ndarray, stack: np.ndarray, test: str = "rsa", **options):
    a = SpaceVectors("layer", keys(len(x)), x, kind="layer")
    opts = ComparisonOptions.make(test, **options)
    spec = plan_comparison(a, rdm_space(stack), opts, {"layer": "a", "fmri": "b"})
    return spec, run_comparison(spec)


def model_and_data(x: np.ndarray, stack: np.ndarray):
    """The layer as an rsatoolbox fixed model (correlation distance) and the subjects' RDMs."""
    iu = np.triu_indices(len(x), 1)
    model = rsatoolbox.model.ModelFixed("layer", 1 - similarity_matrix(x)[iu])
    data = rsatoolbox.rdm.RDMs(np.stack([d[iu] for d in stack]))
    return model, data


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("method", ["spearman", "pearson", "kendall"])
def test_statistic_subjects_and_ceiling_equal_rsatoolbox(seed: int, method: str) -> None:
    from rsatoolbox.inference import boot_noise_ceiling, eval_fixed

    x, stack = generated(seed, n=10 + seed, subjects=3 + seed)
    _, got = record(x, stack, method=method)
    model, data = model_and_data(x, stack)
    theirs = eval_fixed(model, data, method=RSATOOLBOX_METHOD[method]).evaluations[0, 0]
    np.testing.assert_allclose(got.extra["subject_values"], theirs, atol=1e-9, rtol=0)
    assert got.statistic == pytest.approx(np.mean(theirs), abs=1e-9)
    lower, upper = boot_noise_ceiling(data, method=RSATOOLBOX_METHOD[method])
    ceiling = got.extra["ceiling"]
    assert (ceiling.lower, ceiling.upper) == (
        pytest.approx(lower, abs=1e-9),
        pytest.approx(upper, abs=1e-9),
    )
    assert got.extra["subjects"] == [f"sub-{s + 1:02d}" for s in range(len(stack))]


def test_2v2_is_the_mean_of_each_subjects_2v2_and_its_ceiling_uses_2v2() -> None:
    x, stack = generated(4)
    _, got = record(x, stack, "2v2")
    sim = similarity_matrix(x)
    each = [two_vs_two(sim, -d).accuracy for d in stack]
    np.testing.assert_allclose(got.extra["subject_values"], each, atol=1e-12)
    assert got.statistic == pytest.approx(np.mean(each), abs=1e-12)
    # Ceiling by hand: z-scored pool of all / of the others, 2 vs 2 with each subject.
    iu = np.triu_indices(len(x), 1)
    z = np.array([(d[iu] - d[iu].mean()) / d[iu].std() for d in stack])

    def square(v: np.ndarray) -> np.ndarray:
        m = np.zeros((len(x), len(x)))
        m[iu] = v
        return m + m.T

    upper = np.mean([two_vs_two(-square(z.mean(0)), -d).accuracy for d in stack])
    lower = np.mean(
        [two_vs_two(-square(np.delete(z, s, 0).mean(0)), -stack[s]).accuracy for s in range(5)]
    )
    assert (got.extra["ceiling"].lower, got.extra["ceiling"].upper) == (
        pytest.approx(lower, abs=1e-12),
        pytest.approx(upper, abs=1e-12),
    )


def test_permutation_null_is_the_mean_of_the_subjects_nulls_with_the_same_relabellings() -> None:
    x, stack = generated(5, subjects=3)
    spec, got = record(x, stack, permutations=30, seed=11)
    sim = similarity_matrix(x)
    nulls = [rsa(sim, -d, n_permutations=30, seed=11).null for d in stack]
    np.testing.assert_allclose(got.null, np.mean(nulls, axis=0), atol=1e-12)
    expected_p = (1 + np.sum(np.mean(nulls, axis=0) >= got.statistic - 1e-12)) / 31
    assert got.p_value == pytest.approx(expected_p)


def test_subject_bootstrap_uses_the_resampling_scheme_of_eval_bootstrap_rdm() -> None:
    from rsatoolbox.inference import eval_bootstrap_rdm

    x, stack = generated(6, subjects=6)
    _, got = record(x, stack, method="spearman")
    model, data = model_and_data(x, stack)
    np.random.seed(123)
    theirs = eval_bootstrap_rdm(model, data, method="spearman", N=40, boot_noise_ceil=False)
    np.random.seed(123)
    draws = np.stack([np.random.randint(0, 6, size=6) for _ in range(40)])
    ours = subject_bootstrap(got.extra["subject_values"], draws=draws)
    np.testing.assert_allclose(ours.values, theirs.evaluations[:, 0], atol=1e-9, rtol=0)


def test_dual_bootstrap_draws_evaluate_as_rsatoolbox_and_its_variance_is_corrected(
    monkeypatch,
) -> None:
    from rsatoolbox.inference import evaluate
    from rsatoolbox.util.inference_util import _dual_bootstrap

    x, stack = generated(7, n=11, subjects=5)
    _, got = record(x, stack, method="spearman")
    model, data = model_and_data(x, stack)
    drawn: list[tuple[np.ndarray, np.ndarray]] = []
    original = evaluate.bootstrap_sample

    def recording(*args, **kwargs):
        sample, rdm_idx, pattern_idx = original(*args, **kwargs)
        drawn.append((np.asarray(rdm_idx), np.asarray(pattern_idx)))
        return sample, rdm_idx, pattern_idx

    monkeypatch.setattr(evaluate, "bootstrap_sample", recording)
    np.random.seed(5)
    result = evaluate.eval_dual_bootstrap(
        model, data, method="spearman", k_pattern=1, k_rdm=1, N=30, use_correction=False
    )
    theirs = result.evaluations[:, 0, 0, 0, :]  # (draws, both / subjects / concepts)
    subj = np.stack([d[0] for d in drawn])
    conc = np.stack([d[1] for d in drawn])
    sim = similarity_matrix(x)
    resampled = per_subject_resampled(sim, -stack, Comparator("rsa", "spearman"))
    values = np.asarray(got.extra["subject_values"])
    ok = np.isfinite(theirs).all(axis=1)
    assert ok.sum() >= 25 and len(drawn) == 30
    for i in np.flatnonzero(ok):
        per_subject = resampled(conc[i])
        assert per_subject[subj[i]].mean() == pytest.approx(theirs[i, 0], abs=1e-9)
        assert values[subj[i]].mean() == pytest.approx(theirs[i, 1], abs=1e-9)
        assert per_subject.mean() == pytest.approx(theirs[i, 2], abs=1e-9)
    interval = dual_bootstrap(values, resampled, 11, 0.0, draws=(subj[ok], conc[ok]))
    variances = np.var(
        np.array(
            [
                [resampled(c)[s].mean(), values[s].mean(), resampled(c).mean()]
                for s, c in zip(subj[ok], conc[ok], strict=True)
            ]
        ).T,
        axis=1,
        ddof=1,
    )
    assert interval.se**2 == pytest.approx(float(_dual_bootstrap(variances, 5, 11)), rel=1e-9)
    half = stats.t.ppf(0.975, 4) * interval.se
    assert (interval.low, interval.high) == (
        pytest.approx(values.mean() - half),
        pytest.approx(values.mean() + half),
    )


def test_every_inference_is_stored_with_its_units() -> None:
    x, stack = generated(8, subjects=6)
    _, got = record(x, stack, permutations=20, bootstrap=30, seed=3)
    extra = got.extra
    assert [t.method for t in extra["tests"]] == ["t", "wilcoxon", "sign_flip"]
    assert {k: v.units for k, v in extra["intervals"].items()} == {
        "bootstrap_concepts": "concepts",
        "bootstrap_subjects": "subjects",
        "bootstrap_dual": "both",
    }
    # The result's interval is the concept bootstrap of the mean over subjects.
    assert (got.ci_low, got.ci_high) == (
        extra["intervals"]["bootstrap_concepts"].low,
        extra["intervals"]["bootstrap_concepts"].high,
    )
    t = stats.ttest_1samp(extra["subject_values"], 0.0, alternative="greater")
    assert extra["tests"][0].p_value == pytest.approx(t.pvalue)


def test_sign_flip_is_exact_up_to_16_subjects_by_enumeration() -> None:
    d = np.array([0.3, 0.1, -0.05, 0.2, 0.25])
    flips = np.array(np.meshgrid(*[[1, -1]] * 5)).reshape(5, -1).T
    means = flips @ d / 5
    expected = np.mean(means >= d.mean() - 1e-12)
    got = sign_flip_test(d)
    assert got.exact and got.n_resamples == 32 and got.p_value == pytest.approx(expected)
    two = sign_flip_test(d, two_sided=True)
    assert two.p_value == pytest.approx(np.mean(np.abs(means) >= abs(d.mean()) - 1e-12))
    many = sign_flip_test(np.linspace(0.1, 1, 20), seed=1)
    assert not many.exact and many.n_resamples == 10_000 and many.p_value < 0.01


def test_tests_over_subjects_reject_at_about_alpha_under_a_true_null() -> None:
    """200 simulated studies where the layer carries no information about any subject: each
    test over subjects rejects at alpha 0.05 within the binomial 99% band."""
    rng = np.random.default_rng(2024)
    alpha, runs, n, subjects = 0.05, 200, 10, 8
    rejections = {"t": 0, "wilcoxon": 0, "sign_flip": 0}
    for _ in range(runs):
        sim = similarity_matrix(rng.standard_normal((n, 5)))
        values = []
        for _ in range(subjects):
            y = rng.standard_normal((n, 5))
            values.append(rsa(sim, -np.linalg.norm(y[:, None] - y[None], axis=2)).rho)
        for test in subject_tests(values, 0.0, seed=1):
            rejections[test.method] += test.p_value is not None and test.p_value <= alpha
    low, high = stats.binom.ppf([0.005, 0.995], runs, alpha)
    for method, count in rejections.items():
        assert low <= count <= high, (method, count, (low, high))


def test_the_subject_bootstrap_interval_covers_the_mean_at_about_its_level() -> None:
    """200 simulated studies of 20 subjects whose values scatter around a known mean (skewed,
    as per-subject correlations are): the 95% interval over subjects (a sweep's against an
    RDM) covers that mean in about 95% of them. A percentile interval over 20 units from 100
    resamples runs a little short (about 0.9 here); an interval of the wrong width (a
    standard error's, or one from too few units) lands far outside 0.85 to 0.99."""
    rng = np.random.default_rng(7)
    studies, subjects, mean = 200, 20, 0.3
    covered = 0
    for study in range(studies):
        values = mean + rng.gamma(4.0, 0.05, size=subjects) - 0.2
        ci = subject_bootstrap(values, n_bootstrap=100, seed=study)
        covered += ci.low <= mean <= ci.high
    assert 0.85 <= covered / studies <= 0.99, covered / studies


@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_a_generating_model_lies_inside_its_ceiling(method: str) -> None:
    """Seven subjects over 24 concepts, one on a 10x scale: the model that generated them is
    inside the ceiling (the mean-RDM comparison put it above the upper bound)."""
    rng = np.random.default_rng(17)
    x = rng.standard_normal((24, 8))
    truth = 1 - similarity_matrix(x)
    stack = []
    for s in range(7):
        noisy = truth + 0.25 * rng.standard_normal(truth.shape)
        noisy = (noisy + noisy.T) / 2
        np.fill_diagonal(noisy, 0)
        stack.append(np.clip(noisy, 0, None) * (10.0 if s == 0 else 1.0))
    stack = np.stack(stack)
    _, got = record(x, stack, method=method)
    ceiling = got.extra["ceiling"]
    assert ceiling.lower <= got.statistic <= ceiling.upper, (got.statistic, ceiling)
    mean_rdm = rsa(similarity_matrix(x), -stack.mean(0), method=method).rho
    assert mean_rdm > ceiling.upper  # what the old method reported


def test_normalisation_is_explicit_recorded_and_refused_for_vector_targets() -> None:
    x, stack = generated(9)
    spec_none, plain = record(x, stack, method="pearson")
    spec_z, zscored = record(x, stack, method="pearson", normalise="zscore")
    _, ranked = record(x, stack, method="pearson", normalise="rank")
    assert (spec_none.target, spec_z.target) == ("subjects:none", "subjects:zscore")
    assert spec_z.params()["target"] == "subjects:zscore"
    # Pearson is unchanged by z-scoring each subject; ranking turns it into Spearman.
    assert zscored.statistic == pytest.approx(plain.statistic, abs=1e-12)
    _, spearman = record(x, stack, method="spearman")
    assert ranked.statistic != pytest.approx(plain.statistic, abs=1e-6)
    assert ranked.extra["subject_values"] == pytest.approx(
        [
            rsa(similarity_matrix(x), -d, method="pearson").rho
            for d in normalise_rdms(stack, "rank")
        ],
        abs=1e-12,
    )
    a = SpaceVectors("layer", keys(12), x, kind="layer")
    words = SpaceVectors("words", keys(12), x + 1, kind="word")
    with pytest.raises(ConfigError, match="--normalise zscore .* 'words' is a word space"):
        plan_comparison(a, words, ComparisonOptions.make("rsa", normalise="zscore"), {})
    with pytest.raises(ConfigError, match="unknown RDM normalisation 'ranks'"):
        ComparisonOptions.make("rsa", normalise="ranks")
    flat = stack.copy()
    flat[2] = 1.0
    np.fill_diagonal(flat[2], 0)
    with pytest.raises(DegenerateInputError, match="'fmri': subject\\(s\\) sub-03"):
        record(x, flat)


def test_subject_ceiling_needs_two_subjects() -> None:
    _, stack = generated(1, subjects=2)
    with pytest.raises(ConfigError, match="at least two subjects"):
        subject_ceiling(stack[:1], Comparator("rsa", "spearman"))


def test_wilcoxon_says_which_distribution_gave_its_p() -> None:
    untied = [0.1, 0.2, -0.05, 0.3, 0.25, 0.15]
    tied = [0.1, 0.2, -0.05, 0.3, 0.25, 0.2]
    exact = {t.method: t for t in subject_tests(untied, 0.0)}["wilcoxon"]
    approx = {t.method: t for t in subject_tests(tied, 0.0)}["wilcoxon"]
    assert exact.exact and exact.p_value == pytest.approx(
        stats.wilcoxon(untied, alternative="greater", method="exact").pvalue
    )
    assert not approx.exact and approx.p_value == pytest.approx(
        stats.wilcoxon(tied, alternative="greater", method="asymptotic").pvalue
    )


def test_bootstraps_over_subjects_need_enough_resamples_and_plans_count_subjects(
    tmp_path,
) -> None:
    from semwh.runs.plan import plan_spec

    x, stack = generated(10, subjects=6)
    with pytest.raises(ConfigError, match="--bootstrap 5: .* at least 20 resamples"):
        record(x, stack, bootstrap=5)
    spec, _ = record(x, stack, bootstrap=20, seed=1)
    one = SpaceVectors("one", keys(12), x + 1, kind="word")
    a = SpaceVectors("layer", keys(12), x, kind="layer")
    vector_spec = plan_comparison(a, one, ComparisonOptions.make("rsa", bootstrap=20, seed=1), {})
    extra = plan_spec(spec, tmp_path).work_bytes - plan_spec(vector_spec, tmp_path).work_bytes
    assert extra >= 6 * 12 * 12 * 8


@pytest.mark.parametrize(
    "comparator", [Comparator("rsa", "spearman"), Comparator("2v2", "pearson")]
)
def test_concept_resamples_of_one_subject_are_the_concept_bootstrap(comparator) -> None:
    """Per subject, a concept resample scores as the concept bootstrap of a single matrix
    (pairs of two copies left out for RSA; pair decisions weighted by counts for 2 vs 2)."""
    from semwh.analyze import bootstrap_rsa, bootstrap_two_vs_two
    from semwh.analyze.subjects import concept_bootstrap

    x, stack = generated(11, n=9, subjects=3)
    sim = similarity_matrix(x)
    resampled = per_subject_resampled(sim, -stack, comparator)
    ours = concept_bootstrap(resampled, 9, n_bootstrap=25, seed=4)
    each = []
    for d in stack:
        if comparator.test == "rsa":
            each.append(bootstrap_rsa(sim, -d, n_bootstrap=25, seed=4).values)
        else:
            each.append(bootstrap_two_vs_two(sim, -d, n_bootstrap=25, seed=4).values)
    np.testing.assert_allclose(ours.values, np.mean(each, axis=0), atol=1e-12)
