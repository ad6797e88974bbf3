"""The pure per-comparison step: a spec in, a record out, no warehouse."""

from __future__ import annotations

import numpy as np
import pytest

from semwh.analyze import rsa, similarity_matrix, two_vs_two
from semwh.errors import ConfigError, DegenerateInputError
from semwh.runs import ComparisonOptions, plan_comparison, run_comparison, run_or_skip
from semwh.runs.comparison import with_seed
from semwh.runs.sweep import Skipped
from semwh.vectors import SpaceVectors


def _spaces(seed: int = 0, n: int = 9) -> tuple[SpaceVectors, SpaceVectors]:
    rng = np.random.default_rng(seed)
    wnids = [f"n{i:08d}" for i in range(n)]
    a = rng.normal(size=(n, 6))
    b = a @ rng.normal(size=(6, 4)) + 0.5 * rng.normal(size=(n, 4))
    return SpaceVectors("layer", wnids, a), SpaceVectors("words", wnids, b)


@pytest.mark.parametrize("test", ["rsa", "2v2"])
def test_run_comparison_is_the_pure_statistic(test: str) -> None:
    a, b = _spaces()
    spec = with_seed(plan_comparison(a, b, ComparisonOptions.make(test, permutations=9), {}), 123)
    record = run_comparison(spec)
    sa, sb = similarity_matrix(a.matrix), similarity_matrix(b.matrix)
    if test == "rsa":
        want = rsa(sa, sb, n_permutations=9, seed=123)
        assert record.statistic == want.rho and record.n_pairs is None
    else:
        want = two_vs_two(sa, sb, n_permutations=9, seed=123)
        assert record.statistic == want.accuracy and record.n_pairs == want.n_pairs
    assert record.p_value == want.p_value
    np.testing.assert_array_equal(record.null, want.null)
    assert record.null_mean == pytest.approx(float(np.mean(want.null)), abs=1e-15)
    # The same spec gives the same record, bit for bit.
    assert run_comparison(spec).statistic == record.statistic


def test_unresolved_seed_is_refused() -> None:
    a, b = _spaces()
    spec = plan_comparison(a, b, ComparisonOptions.make("rsa", permutations=5), {})
    with pytest.raises(ConfigError, match="needs a seed"):
        run_comparison(spec)


def test_degenerate_comparison_names_both_spaces_or_is_skipped() -> None:
    a, b = _spaces()
    flat = a.matrix.copy()
    flat[3] = 7.0
    spec = plan_comparison(
        SpaceVectors("flat", a.concept_ids, flat), b, ComparisonOptions.make("2v2"), {}
    )
    with pytest.raises(DegenerateInputError) as info:
        run_comparison(spec)
    assert "'flat'" in str(info.value) and "'words'" in str(info.value)
    assert a.concept_ids[3] in str(info.value)
    skipped = run_or_skip(spec)
    assert isinstance(skipped, Skipped) and skipped.reason == str(info.value)
