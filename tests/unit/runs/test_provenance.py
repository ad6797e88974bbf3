"""Seeds, hashes and option checks of the orchestration layer."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from semwh.errors import ConfigError, DegenerateInputError
from semwh.runs import ComparisonOptions, concepts_sha256, derive_seed, draw_seed
from semwh.runs.comparison import plan_comparison, shared_concepts, with_seed
from semwh.runs.provenance import canonical_json, library_versions, params_sha256
from semwh.vectors import SpaceVectors


def test_concepts_hash_is_sha256_of_joined_wnids() -> None:
    wnids = ["n01", "n02", "n03"]
    assert concepts_sha256(wnids) == hashlib.sha256(b"n01\nn02\nn03").hexdigest()


def test_params_hash_ignores_key_order() -> None:
    assert params_sha256({"a": 1, "b": [1, 2]}) == params_sha256({"b": [1, 2], "a": 1})
    assert params_sha256({"a": 1}) != params_sha256({"a": 2})
    assert canonical_json({"b": 1, "a": None}) == '{"a":null,"b":1}'


def test_derived_seeds_depend_only_on_parent_and_keys() -> None:
    seed = derive_seed(42, "2v2", "m/l1", "words")
    assert seed == derive_seed(42, "2v2", "m/l1", "words")
    others = {
        derive_seed(43, "2v2", "m/l1", "words"),
        derive_seed(42, "rsa", "m/l1", "words"),
        derive_seed(42, "2v2", "m/l2", "words"),
        derive_seed(42, "2v2", "m/l1words", ""),
    }
    assert seed not in others and len(others) == 4
    assert all(0 <= s < 2**63 for s in [seed, *others])
    np.random.default_rng(seed)  # usable as a numpy seed


def test_drawn_seeds_fit_a_signed_64_bit_column() -> None:
    seeds = {draw_seed() for _ in range(20)}
    assert len(seeds) == 20 and all(0 <= s < 2**63 for s in seeds)


def test_library_versions_name_the_numeric_libraries() -> None:
    versions = library_versions()
    assert set(versions) == {"numpy", "scipy", "torch"}
    assert versions["numpy"] == np.__version__


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"similarity": "pearsn"}, "unknown similarity metric 'pearsn' (choose pearson, spearman"),
        ({"method": "tau"}, "unknown RSA method 'tau' (choose spearman, pearson, kendall)"),
        ({"device": "tpu"}, "unknown device 'tpu' (choose cpu, cuda)"),
        ({"permutations": -1}, "permutations must be 0 or more"),
        ({"seed": -5}, "seed must be 0 or more"),
    ],
)
def test_bad_options_name_the_choices(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ComparisonOptions.make("rsa", **kwargs)
    assert message in str(info.value)


def test_options_keep_only_the_metric_of_their_test() -> None:
    rsa = ComparisonOptions.make("rsa", method="kendall", distance="cosine")
    two = ComparisonOptions.make("2v2", method="kendall", distance="cosine", device="cuda:1")
    assert (rsa.method, rsa.distance, rsa.metric) == ("kendall", None, "kendall")
    assert (two.method, two.distance, two.metric) == (None, "cosine", "cosine")
    assert two.device == "cuda:1"
    assert not rsa.needs_seed
    assert ComparisonOptions.make("rsa", bootstrap=10).needs_seed


def _space(name: str, wnids: list[str], seed: int) -> SpaceVectors:
    rng = np.random.default_rng(seed)
    order = sorted(wnids)
    return SpaceVectors(name=name, concept_ids=order, matrix=rng.normal(size=(len(order), 3)))


def test_plan_restricts_both_spaces_to_shared_sorted_concepts() -> None:
    a = _space("a", ["n5", "n1", "n3", "n4", "n2", "n9"], 0)
    b = _space("b", ["n4", "n2", "n3", "n1", "n7"], 1)
    spec = plan_comparison(a, b, ComparisonOptions.make("rsa"), {"a": "x", "b": "y"})
    assert spec.concept_ids == ("n1", "n2", "n3", "n4")
    np.testing.assert_array_equal(spec.a, a.matrix[[0, 1, 2, 3]])
    np.testing.assert_array_equal(spec.b, b.matrix[[0, 1, 2, 3]])
    assert spec.concepts_sha256 == concepts_sha256(["n1", "n2", "n3", "n4"])
    assert spec.params()["method"] == "spearman" and "distance" not in spec.params()


def test_fewer_than_four_shared_concepts_is_degenerate() -> None:
    a = _space("layer", ["n1", "n2", "n3", "n4"], 0)
    b = _space("glove", ["n1", "n2", "n3", "n8"], 1)
    with pytest.raises(DegenerateInputError, match=r"'layer'.*'glove'.*share 3 concepts"):
        shared_concepts(a, b)


def test_seed_is_only_set_when_something_is_random() -> None:
    a = _space("a", ["n1", "n2", "n3", "n4"], 0)
    plain = plan_comparison(a, a, ComparisonOptions.make("rsa"), {})
    assert with_seed(plain, 5).options.seed is None
    permuted = plan_comparison(a, a, ComparisonOptions.make("rsa", permutations=3), {})
    assert with_seed(permuted, 5).options.seed == 5
