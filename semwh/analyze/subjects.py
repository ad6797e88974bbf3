"""Targets with subjects: a space compared with each subject's RDM, as rsatoolbox evaluates.

A target with subjects (an RDM space: one dissimilarity matrix per subject over the same
concepts) is never averaged into one matrix before a comparison. Each measure (RSA with its
comparator, 2 vs 2 with its row distance) is computed against each subject's matrix; the
result's statistic is the mean over subjects (rsatoolbox's ``eval_fixed``), and the
per-subject values are kept. Everything here works on those values or on the subjects'
matrices; nothing reads or writes a warehouse.

* :func:`normalise_rdms` rescales each subject's matrix (``none``, ``zscore`` or ``rank`` of
  its off-diagonal entries), so that no subject weighs more for being recorded on another
  scale where a pooled matrix is formed.
* :func:`subject_ceiling` is the noise ceiling with the *same* comparator as the model side
  (rsatoolbox's ``boot_noise_ceiling``): the subjects' matrices are pooled the way the
  comparator is best served (ranks for Spearman and Kendall tau-a, z-scores for Pearson and
  the Pearson row distance, root-mean-square scaling for the cosine row distance); the upper
  bound is the mean over subjects of each subject's agreement with the pool of all, the lower
  bound with the pool of the others. A model that generated the data lies between them.
* :func:`subject_tests`: inference over subjects from the per-subject values: a one-sided
  one-sample t test and Wilcoxon signed-rank test against chance, and a sign-flip permutation
  test of the mean (exact, all 2^S flips, up to :data:`EXACT_FLIPS_MAX` subjects).
* :func:`subject_bootstrap`: resampling subjects with replacement, the mean of the drawn
  subjects' values (rsatoolbox's ``eval_bootstrap_rdm``).
* :func:`dual_bootstrap`: subjects and concepts resampled together, each draw also evaluated
  with only its subjects and only its concepts resampled; the three variances are combined
  with rsatoolbox's small-sample correction (``eval_dual_bootstrap``), which removes the
  double counting of the two sources of variance. Copies of one concept drawn twice form no
  pair (their dissimilarity is not a measurement), as in rsatoolbox.

Chance is 0 for RSA and 0.5 for 2 vs 2. Every p-value is one-sided (greater than chance), as
the concept permutation test is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from semwh.analyze.bootstrap import pair_correlation, resampled_pairs
from semwh.analyze.design import draw_rows, resample_units
from semwh.analyze.permutation import STAT_TOL, make_rng
from semwh.errors import ConfigError, DegenerateInputError, InputError

NORMALISATIONS = ("none", "zscore", "rank")

#: Up to this many subjects the sign-flip test enumerates all 2^S flips (an exact p).
EXACT_FLIPS_MAX = 16

#: Random sign flips drawn above :data:`EXACT_FLIPS_MAX` subjects.
RANDOM_FLIPS = 10_000

#: Fewest resamples a bootstrap over subjects or both may use (a variance or percentile
#: interval from fewer draws means nothing).
MIN_RESAMPLES = 20

#: Expected value of each statistic when a space carries no information about the target.
CHANCE = {"rsa": 0.0, "2v2": 0.5}


@dataclass(frozen=True)
class Comparator:
    """How one subject's matrix is compared: RSA with its correlation or 2 vs 2 with its
    row distance and tie tolerance."""

    test: str
    metric: str
    tie_tol: float = 0.0

    @property
    def chance(self) -> float:
        return CHANCE[self.test]

    @property
    def pooling(self) -> str:
        """How subjects' matrices are pooled for this comparator (rsatoolbox's ``pool_rdm``)."""
        if self.metric in ("spearman", "kendall"):
            return "rank"
        return "rms" if self.metric == "cosine" else "zscore"


def check_normalise(how: str) -> str:
    if how not in NORMALISATIONS:
        raise ConfigError(f"unknown RDM normalisation {how!r} (choose {', '.join(NORMALISATIONS)})")
    return how


def _upper(stack: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    if stack.ndim != 3 or stack.shape[1] != stack.shape[2]:
        raise InputError(f"RDMs have shape {stack.shape}, expected subjects x n x n")
    iu = np.triu_indices(stack.shape[1], 1)
    return stack[:, iu[0], iu[1]], iu


def _square(vectors: np.ndarray, n: int, iu: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    out = np.zeros((vectors.shape[0], n, n))
    out[:, iu[0], iu[1]] = vectors
    out[:, iu[1], iu[0]] = vectors
    return out


def _scaled(vectors: np.ndarray, how: str) -> np.ndarray:
    """Each row of ``vectors`` ranked, z-scored or scaled to unit root mean square."""
    if how == "none":
        return vectors
    if how == "rank":
        return stats.rankdata(vectors, axis=1)
    if how == "rms":
        return vectors / np.sqrt(np.mean(vectors**2, axis=1, keepdims=True))
    centred = vectors - vectors.mean(axis=1, keepdims=True)
    return centred / centred.std(axis=1, keepdims=True)


def normalise_rdms(
    stack: np.ndarray, how: str = "none", subjects: Sequence[str] | None = None
) -> np.ndarray:
    """Each subject's matrix with its off-diagonal entries as they are, z-scored or ranked.

    Raises:
        ConfigError: An unknown normalisation.
        DegenerateInputError: A subject whose off-diagonal entries are all equal (no
            structure to compare); the message names the subject.
    """
    check_normalise(how)
    stack = np.asarray(stack, dtype=np.float64)
    vectors, iu = _upper(stack)
    flat = np.ptp(vectors, axis=1) == 0
    if flat.any():
        names = list(subjects) if subjects is not None else [str(i + 1) for i in range(len(stack))]
        shown = ", ".join(names[i] for i in np.flatnonzero(flat)[:10])
        raise DegenerateInputError(
            f"subject(s) {shown}: every dissimilarity between these concepts is the same; "
            "a constant RDM carries no structure to compare (drop the subject or use more "
            "concepts)"
        )
    if how == "none":
        return stack
    return _square(_scaled(vectors, how), stack.shape[1], iu)


def as_similarities(stack: np.ndarray) -> np.ndarray:
    """The similarity matrices a measure compares with: minus each subject's dissimilarities.

    Negation orders pairs the other way round; every comparator used here (Spearman, Pearson,
    Kendall tau-a; the Pearson and cosine row distances of 2 vs 2, which compare rows of
    off-diagonal entries) then agrees with comparing the dissimilarities themselves.
    """
    return -np.asarray(stack, dtype=np.float64)


def compare_matrices(sim_a: np.ndarray, sim_b: np.ndarray, comparator: Comparator) -> float:
    """One comparison of two n x n similarity matrices (RSA rho or 2 vs 2 accuracy)."""
    if comparator.test == "rsa":
        from semwh.analyze.rsa import rsa

        return float(rsa(sim_a, sim_b, method=comparator.metric).rho)
    from semwh.analyze.two_vs_two import two_vs_two

    return float(
        two_vs_two(sim_a, sim_b, distance=comparator.metric, tie_tol=comparator.tie_tol).accuracy
    )


@dataclass(frozen=True)
class SubjectCeiling:
    """Noise ceiling of a target with subjects, on the scale of the model's statistic."""

    lower: float
    upper: float
    n_subjects: int


def subject_ceiling(stack: np.ndarray, comparator: Comparator) -> SubjectCeiling:
    """The noise ceiling of ``stack`` (subjects x n x n dissimilarities) for ``comparator``.

    Upper bound: mean over subjects of the agreement of each subject's matrix with the pool
    of all subjects; lower bound: with the pool of the other subjects (leave one out).

    Raises:
        ConfigError: Fewer than two subjects.
    """
    stack = np.asarray(stack, dtype=np.float64)
    n_subjects = stack.shape[0]
    if n_subjects < 2:
        raise ConfigError("a noise ceiling needs the RDMs of at least two subjects")
    vectors, iu = _upper(stack)
    prepared = _scaled(vectors, comparator.pooling)
    n = stack.shape[1]
    pool_all = _square(prepared.mean(axis=0)[None], n, iu)[0]
    upper, lower = [], []
    for s in range(n_subjects):
        others = _square(np.delete(prepared, s, axis=0).mean(axis=0)[None], n, iu)[0]
        subject = as_similarities(stack[s])
        upper.append(compare_matrices(-pool_all, subject, comparator))
        lower.append(compare_matrices(-others, subject, comparator))
    return SubjectCeiling(float(np.mean(lower)), float(np.mean(upper)), n_subjects)


@dataclass(frozen=True)
class SubjectTest:
    """One test over subjects of the per-subject statistics.

    Attributes:
        method: ``t``, ``wilcoxon`` or ``sign_flip``.
        statistic: The test statistic (t; Wilcoxon's W+; the mean difference from chance).
        p_value: One-sided p (greater than chance); None where the test is undefined (every
            subject at the same value), with the reason in ``note``.
        n_resamples: Sign flips behind the p-value (2^S when exact; 0 for t and Wilcoxon).
        exact: The p-value enumerates every flip, or uses Wilcoxon's exact distribution.
    """

    method: str
    statistic: float | None
    p_value: float | None
    n_resamples: int = 0
    exact: bool = False
    note: str = ""


def subject_tests(
    values: Sequence[float],
    chance: float,
    *,
    seed: int | np.random.Generator = 0,
    alternative: str = "greater",
) -> list[SubjectTest]:
    """One-sample t, Wilcoxon signed-rank and sign-flip tests of the mean against chance.

    Args:
        values: The per-subject statistics (at least two subjects), or the per-subject
            differences of two results (with ``chance`` 0 and a two-sided alternative).
        chance: The statistic's value under no information (0 for RSA, 0.5 for 2 vs 2).
        seed: Seed of the random flips (used above :data:`EXACT_FLIPS_MAX` subjects).
        alternative: ``greater`` (one-sided, the default) or ``two-sided``.

    Raises:
        ConfigError: Fewer than two subjects.
    """
    if alternative not in ("greater", "two-sided"):
        raise ConfigError(f"alternative must be greater or two-sided, got {alternative!r}")
    d = np.asarray(values, dtype=np.float64) - chance
    if d.size < 2:
        raise ConfigError("tests over subjects need the statistics of at least two subjects")
    out: list[SubjectTest] = []
    if np.ptp(d) == 0:
        note = "every subject has the same value: a test over subjects is undefined"
        out.append(SubjectTest("t", None, None, note=note))
    else:
        t = stats.ttest_1samp(d, 0.0, alternative=alternative)
        out.append(SubjectTest("t", float(t.statistic), float(t.pvalue)))
    if not np.any(d != 0):
        out.append(SubjectTest("wilcoxon", None, None, note="every subject is at chance"))
    else:
        # The exact distribution without zeros or ties (at most 50 subjects), else the
        # normal approximation: the flag says which ran.
        exact = d.size <= 50 and np.count_nonzero(d) == d.size and _no_ties(np.abs(d))
        w = stats.wilcoxon(d, alternative=alternative, method="exact" if exact else "asymptotic")
        out.append(SubjectTest("wilcoxon", float(w.statistic), float(w.pvalue), exact=exact))
    out.append(sign_flip_test(d, seed=seed, two_sided=alternative == "two-sided"))
    return out


def _no_ties(x: np.ndarray) -> bool:
    return np.unique(x).size == x.size


def sign_flips(n_subjects: int, rng: np.random.Generator | None) -> np.ndarray:
    """(F, S) signs: all 2^S flips when S <= :data:`EXACT_FLIPS_MAX`, else random ones."""
    if n_subjects <= EXACT_FLIPS_MAX:
        codes = np.arange(2**n_subjects)[:, None] >> np.arange(n_subjects)[None, :]
        return np.where(codes & 1, -1.0, 1.0)
    assert rng is not None
    return rng.choice(np.array([-1.0, 1.0]), size=(RANDOM_FLIPS, n_subjects))


def sign_flip_test(
    d: np.ndarray, *, seed: int | np.random.Generator = 0, two_sided: bool = False
) -> SubjectTest:
    """Sign-flip permutation test of mean(d) > 0 (d: per-subject differences from chance;
    two-sided: |mean(d)| > 0).

    Exact over all 2^S flips (p = #{flipped mean >= observed} / 2^S, the identity flip
    included) up to :data:`EXACT_FLIPS_MAX` subjects; above, (1 + #{>=}) / (1 + F) over F
    random flips.
    """
    d = np.asarray(d, dtype=np.float64)
    observed = float(d.mean())
    exact = d.size <= EXACT_FLIPS_MAX
    rng = None if exact else make_rng(seed)[0]
    flips = sign_flips(d.size, rng)
    null = flips @ d / d.size
    if two_sided:
        null, observed_cmp = np.abs(null), abs(observed)
    else:
        observed_cmp = observed
    hits = int(np.count_nonzero(null >= observed_cmp - STAT_TOL))
    p = hits / null.size if exact else (1 + hits) / (1 + null.size)
    return SubjectTest("sign_flip", observed, float(p), n_resamples=int(null.size), exact=exact)


@dataclass(frozen=True)
class Interval:
    """A bootstrap interval of the mean statistic.

    Attributes:
        method: ``bootstrap_concepts``, ``bootstrap_subjects`` or ``bootstrap_dual``.
        units: What the interval generalises over: ``concepts``, ``subjects`` or ``both``.
        low, high: The interval (None where every resample was degenerate).
        level: Its confidence level.
        n_resamples: Resamples drawn.
        se: Standard error (the dual bootstrap's corrected one; None for percentile ones).
        p_value: One-sided p against chance (dual bootstrap: from its t statistic).
        values: The resampled statistics (dual: the draws with both resampled).
    """

    method: str
    units: str
    low: float | None
    high: float | None
    level: float
    n_resamples: int
    se: float | None = None
    p_value: float | None = None
    values: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)


def _percentile(method: str, units: str, values: np.ndarray, level: float) -> Interval:
    finite = values[np.isfinite(values)]
    low = high = None
    if finite.size:
        lo, hi = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
        low, high = float(lo), float(hi)
    return Interval(method, units, low, high, level, int(values.size), values=values)


def subject_draws(rng: np.random.Generator, n_subjects: int, n_bootstrap: int) -> np.ndarray:
    """(B, S) subject indices drawn with replacement, one resample a row."""
    return np.stack([rng.integers(0, n_subjects, size=n_subjects) for _ in range(n_bootstrap)])


def concept_draws(rng: np.random.Generator, n_concepts: int, n_bootstrap: int) -> list[np.ndarray]:
    """B resamples of the n items drawn with replacement (the stream of
    :func:`semwh.analyze.bootstrap.bootstrap_rsa` for the same Generator; at the image level,
    the comparison's design: whole concepts or images)."""
    return [draw_rows(rng, n_concepts) for _ in range(n_bootstrap)]


def subject_bootstrap(
    values: Sequence[float],
    *,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    seed: int | np.random.Generator = 0,
    draws: np.ndarray | None = None,
) -> Interval:
    """Percentile interval of the mean over subjects, resampling subjects.

    ``draws`` (B x S subject indices) replaces the seeded draws, e.g. to follow another
    library's random stream.
    """
    v = np.asarray(values, dtype=np.float64)
    _check_level(level)
    if draws is None:
        draws = subject_draws(make_rng(seed)[0], v.size, _check_count(n_bootstrap))
    return _percentile("bootstrap_subjects", "subjects", v[np.asarray(draws)].mean(axis=1), level)


def _check_count(n: int) -> int:
    if n < 1:
        raise ConfigError(f"n_bootstrap must be >= 1, got {n}")
    return int(n)


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ConfigError(f"level must lie strictly between 0 and 1, got {level}")


#: Per-subject statistic of one concept resample: f(concept indices) -> (S,) values.
ConceptStatistic = Callable[[np.ndarray], np.ndarray]


def per_subject_resampled(
    sim_a: np.ndarray,
    sims_b: np.ndarray,
    comparator: Comparator,
    pair_correct: Sequence[np.ndarray] | None = None,
) -> ConceptStatistic:
    """The per-subject statistics on a concept resample (pairs of two copies of one concept
    left out; a pair drawn twice counts twice), NaN for a degenerate resample.

    ``pair_correct``: for 2 vs 2, each subject's pair decisions over all concepts when the
    caller has them already (``two_vs_two(..., return_pairs=True)``); computed otherwise.
    """
    if comparator.test == "rsa":
        iu = np.triu_indices(sim_a.shape[0], 1)

        def rsa_values(idx: np.ndarray) -> np.ndarray:
            rows, cols = resampled_pairs(idx, iu)
            keep = rows != cols
            r, c = rows[keep], cols[keep]
            a = sim_a[r, c]
            metric = comparator.metric
            return np.array([pair_correlation(a, sim_b[r, c], metric) for sim_b in sims_b])

        return rsa_values
    from semwh.analyze.two_vs_two import two_vs_two

    n = sim_a.shape[0]
    if pair_correct is None:
        decided = []
        for sim_b in sims_b:
            pairs = two_vs_two(
                sim_a,
                sim_b,
                distance=comparator.metric,
                tie_tol=comparator.tie_tol,
                return_pairs=True,
            )
            assert pairs.pair_correct is not None
            decided.append(pairs.pair_correct)
        pair_correct = decided
    correct = []
    for decisions in pair_correct:
        c = np.asarray(decisions, dtype=np.float64)
        correct.append(c + c.T)
    hits = np.stack(correct)
    everything = np.ones((n, n)) - np.eye(n)

    def pair_values(idx: np.ndarray) -> np.ndarray:
        w = np.bincount(idx, minlength=n).astype(np.float64)
        total = ((w @ everything) * w).sum()
        if total == 0:
            return np.full(len(hits), np.nan)
        return np.array([((w @ h) * w).sum() for h in hits]) / total

    return pair_values


def concept_bootstrap(
    resampled: ConceptStatistic,
    n_concepts: int,
    *,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    seed: int | np.random.Generator = 0,
    draws: Sequence[np.ndarray] | np.ndarray | None = None,
) -> Interval:
    """Percentile interval of the mean over subjects, resampling concepts (every subject
    sees the same resample); ``draws`` (one array of item indices per resample) replaces the
    seeded draws."""
    _check_level(level)
    if draws is None:
        draws = concept_draws(make_rng(seed)[0], n_concepts, _check_count(n_bootstrap))
    values = np.array([np.mean(resampled(np.asarray(idx))) for idx in draws])
    return _percentile("bootstrap_concepts", "concepts", values, level)


def dual_bootstrap(
    values: Sequence[float],
    resampled: ConceptStatistic,
    n_concepts: int,
    chance: float,
    *,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    seed: int | np.random.Generator = 0,
    draws: tuple[np.ndarray, np.ndarray] | None = None,
) -> Interval:
    """Subjects and concepts resampled together, with rsatoolbox's variance correction.

    Each draw takes S subjects and n concepts with replacement and evaluates the mean
    statistic three times: both resampled, only the subjects, only the concepts. With
    V_both, V_subjects, V_concepts their variances over draws, the variance of the mean is
    ``S/(S-1) V_s + n/(n-1) V_c - S n / ((S-1)(n-1)) (V_both - V_s - V_c)``, bounded below by
    each single corrected variance and above by V_both (rsatoolbox ``_dual_bootstrap``). The
    interval is mean +- t(dof) se with dof = min(S, n) - 1, and the p-value the one-sided t
    test of the mean against chance with that se. At the image level with whole concepts
    resampled (:mod:`semwh.analyze.design`), n is the number of concepts, not of images.

    Args:
        values: The per-subject statistics on all concepts.
        resampled: The per-subject statistics of a concept resample
            (:func:`per_subject_resampled`).
        n_concepts: n.
        chance: The statistic under no information.
        draws: (subject draws B x S, concept draws B x n) replacing the seeded ones.
    """
    v = np.asarray(values, dtype=np.float64)
    n_subjects = v.size
    if n_subjects < 2:
        raise ConfigError("a dual bootstrap needs at least two subjects")
    _check_level(level)
    if draws is None:
        rng = make_rng(seed)[0]
        b = _check_count(n_bootstrap)
        # Subjects first, then concepts, for each draw (the order rsatoolbox draws them in).
        pairs = [
            (
                rng.integers(0, n_subjects, size=n_subjects),
                draw_rows(rng, n_concepts),
            )
            for _ in range(b)
        ]
        subj = np.stack([p[0] for p in pairs])
        conc = [p[1] for p in pairs]
    else:
        subj, conc = np.asarray(draws[0]), [np.asarray(x) for x in draws[1]]
    both, only_subjects, only_concepts = [], [], []
    for s_idx, c_idx in zip(subj, conc, strict=True):
        per_subject = resampled(c_idx)
        both.append(per_subject[s_idx].mean())
        only_subjects.append(v[s_idx].mean())
        only_concepts.append(per_subject.mean())
    evaluations = np.array([both, only_subjects, only_concepts])
    ok = np.isfinite(evaluations).all(axis=0)
    variances = np.var(evaluations[:, ok], axis=1, ddof=1) if ok.sum() > 1 else np.full(3, np.nan)
    # At the image level a resample of whole concepts draws the concepts, not the images.
    units = resample_units(n_concepts)
    variance = corrected_variance(variances, n_subjects, units)
    estimate = float(v.mean())
    dof = min(n_subjects, units) - 1
    low = high = p = se = None
    if np.isfinite(variance) and variance > 0:
        se = float(np.sqrt(variance))
        half = float(stats.t.ppf((1 + level) / 2, dof)) * se
        low, high = estimate - half, estimate + half
        p = float(stats.t.sf((estimate - chance) / se, dof))
    return Interval(
        "bootstrap_dual",
        "both",
        low,
        high,
        level,
        int(len(subj)),
        se=se,
        p_value=p,
        values=evaluations[0],
    )


def corrected_variance(variances: np.ndarray, n_subjects: int, n_concepts: int) -> float:
    """rsatoolbox's small-sample combination of (V_both, V_subjects, V_concepts)."""
    v_both, v_s, v_c = (float(x) for x in variances)
    ks = n_subjects / (n_subjects - 1)
    kc = n_concepts / (n_concepts - 1)
    variance = ks * v_s + kc * v_c - ks * kc * (v_both - v_s - v_c)
    variance = max(variance, ks * v_s, kc * v_c)
    return float(min(variance, v_both))
