"""A comparison in pieces: statistic without the null, the null in blocks, then completed.

What the ray backend does with a large null must give the record :func:`run_comparison` gives
for the whole spec, field by field.
"""

from __future__ import annotations

import numpy as np
import pytest

from semwh.analyze import permutation_blocks
from semwh.errors import ConfigError, DegenerateInputError
from semwh.runs import ComparisonOptions, plan_comparison, run_comparison
from semwh.runs.comparison import comparison_null, with_null, with_seed, without_null
from semwh.runs.records import ComparisonSpec, ResultRecord
from semwh.vectors import SpaceVectors
from tests.unit.runs.test_comparison import _spaces

N_PERMUTATIONS = 23
SEED = 123
#: Uneven on purpose: a block of one, an empty block, and a last block shorter than the rest.
UNEVEN = [(0, 5), (5, 6), (6, 6), (6, 17), (17, 23)]


def _spec(test: str, bootstrap: int = 0, permutations: int = N_PERMUTATIONS) -> ComparisonSpec:
    a, b = _spaces(seed=3, n=10)
    options = ComparisonOptions.make(test, permutations=permutations, bootstrap=bootstrap)
    return with_seed(plan_comparison(a, b, options, {"layer": "aa", "words": "bb"}), SEED)


def _in_pieces(spec: ComparisonSpec, blocks: list[tuple[int, int]]) -> ResultRecord:
    observed = run_comparison(without_null(spec))
    null = np.concatenate([comparison_null(spec, start, stop) for start, stop in blocks])
    return with_null(observed, spec, null, seconds=0.25)


@pytest.mark.parametrize("bootstrap", [0, 30], ids=["no bootstrap", "bootstrap"])
@pytest.mark.parametrize("test", ["rsa", "2v2"])
def test_pieces_give_the_whole_record(test: str, bootstrap: int) -> None:
    spec = _spec(test, bootstrap)
    whole = run_comparison(spec)
    observed = run_comparison(without_null(spec))
    assert observed.null is None and observed.p_value is None
    assert observed.spec.options.seed == SEED and observed.spec.options.permutations == 0

    pieced = _in_pieces(spec, UNEVEN)
    assert pieced.spec is spec and pieced.spec.options.seed == SEED
    assert pieced.statistic == whole.statistic
    assert pieced.n_pairs == whole.n_pairs
    assert pieced.p_value == whole.p_value and pieced.p_value is not None
    assert pieced.null is not None and whole.null is not None
    assert pieced.null.dtype == np.float64 and pieced.null.shape == (N_PERMUTATIONS,)
    np.testing.assert_array_equal(pieced.null, whole.null)
    assert (pieced.null_mean, pieced.null_q95) == (whole.null_mean, whole.null_q95)
    assert (pieced.ci_low, pieced.ci_high) == (whole.ci_low, whole.ci_high)
    if bootstrap:
        assert whole.ci_low is not None and whole.ci_high is not None
        assert whole.ci_low <= whole.statistic <= whole.ci_high
    else:
        assert whole.ci_low is None and whole.ci_high is None
    assert (pieced.device, pieced.extra) == (whole.device, whole.extra)
    assert pieced.spec.params() == whole.spec.params()
    # The time of the blocks is added to the statistic's.
    assert pieced.seconds >= 0.25
    # The permutations differ from one another: a null of one repeated value would hide a
    # block drawn from the wrong place in the stream.
    assert len(np.unique(whole.null)) > 1


@pytest.mark.parametrize("test", ["rsa", "2v2"])
def test_block_size_does_not_change_the_null(test: str) -> None:
    spec = _spec(test)
    want = run_comparison(spec).null
    for size in (1, 4, 22, 23, 100):
        got = _in_pieces(spec, permutation_blocks(N_PERMUTATIONS, size))
        np.testing.assert_array_equal(got.null, want, err_msg=f"blocks of {size}")


@pytest.mark.parametrize("test", ["rsa", "2v2"])
def test_a_block_is_its_slice_of_the_whole_null(test: str) -> None:
    spec = _spec(test)
    whole = run_comparison(spec).null
    assert whole is not None
    np.testing.assert_array_equal(comparison_null(spec, 9, 14), whole[9:14])
    assert comparison_null(spec, 7, 7).shape == (0,)


@pytest.mark.parametrize("size", [N_PERMUTATIONS - 1, N_PERMUTATIONS + 1, 0])
def test_with_null_refuses_a_null_of_the_wrong_length(size: int) -> None:
    spec = _spec("rsa")
    observed = run_comparison(without_null(spec))
    null = comparison_null(spec, 0, N_PERMUTATIONS)
    wrong = np.resize(null, size)
    with pytest.raises(ConfigError) as info:
        with_null(observed, spec, wrong)
    message = str(info.value)
    assert f"a null of {size} values for {N_PERMUTATIONS} permutations" in message
    assert "'layer'" in message and "'words'" in message and "every block" in message


def test_with_null_refuses_a_null_of_the_wrong_shape() -> None:
    spec = _spec("2v2")
    observed = run_comparison(without_null(spec))
    null = comparison_null(spec, 0, N_PERMUTATIONS)
    with pytest.raises(ConfigError, match="23 permutations"):
        with_null(observed, spec, null.reshape(N_PERMUTATIONS, 1))


def test_no_permutations_take_an_empty_null_only() -> None:
    spec = _spec("rsa", bootstrap=10, permutations=0)
    observed = run_comparison(without_null(spec))
    done = with_null(observed, spec, np.empty(0))
    assert done.null is None and done.p_value is None and done.spec is spec
    assert (done.statistic, done.ci_low, done.ci_high) == (
        observed.statistic,
        observed.ci_low,
        observed.ci_high,
    )
    with pytest.raises(ConfigError, match="a null of 3 values for 0 permutations"):
        with_null(observed, spec, np.zeros(3))


def test_block_outside_the_permutations_is_refused() -> None:
    spec = _spec("2v2")
    with pytest.raises(ConfigError, match="outside the 23 permutations"):
        comparison_null(spec, 20, 24)
    with pytest.raises(ConfigError, match="outside"):
        comparison_null(spec, 5, 4)


def test_block_of_an_unseeded_spec_is_refused() -> None:
    a, b = _spaces()
    spec = plan_comparison(a, b, ComparisonOptions.make("rsa", permutations=5), {})
    with pytest.raises(ConfigError, match="needs a seed"):
        comparison_null(spec, 0, 5)


@pytest.mark.parametrize("test", ["rsa", "2v2"])
def test_degenerate_block_names_the_test_and_both_spaces(test: str) -> None:
    a, b = _spaces(n=8)
    same = np.tile(a.matrix[0], (len(a.concept_ids), 1))
    spec = with_seed(
        plan_comparison(
            SpaceVectors("flat", a.concept_ids, same),
            b,
            ComparisonOptions.make(test, permutations=6),
            {},
        ),
        SEED,
    )
    with pytest.raises(DegenerateInputError) as info:
        comparison_null(spec, 0, 3)
    message = str(info.value)
    assert message.startswith(f"{test} of space 'flat' vs space 'words':")
    assert "nearly identical" in message
