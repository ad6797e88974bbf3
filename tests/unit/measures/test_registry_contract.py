"""The contract every registered measure keeps, checked on each one of the registry: options
that round-trip through storage, a null whose blocks concatenate, a p-value from its own
rule, its weighted and resampled forms agreeing with its statistic, and clear refusals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from semwh import measures
from semwh.errors import ConfigError
from semwh.measures.spec import ComparisonSpec
from semwh.runs.provenance import concepts_sha256

N = 12


def spec_for(name: str, seed: int = 3, permutations: int = 7) -> ComparisonSpec:
    """Two related random spaces over N concepts, compared with ``name``'s defaults."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(N, 6))
    b = a @ rng.normal(size=(6, 5)) + 0.5 * rng.normal(size=(N, 5))
    options = measures.get(name).make_options(permutations=permutations, seed=seed)
    wnids = tuple(f"c{i:02d}" for i in range(N))
    return ComparisonSpec("a", "b", wnids, a, b, options, {}, concepts_sha256(wnids))


@pytest.fixture(params=measures.names())
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_declarations(name: str) -> None:
    measure = measures.get(name)
    assert measure.name == name and measure.label and measure.summary
    assert measure.inputs in (measures.FEATURES, measures.SIMILARITIES)
    assert measure.direction == "greater" and isinstance(measure.version, int)
    assert measures.analysis_version(name) == measure.version


def test_options_round_trip_through_what_is_stored(name: str) -> None:
    measure = measures.get(name)
    made = measure.make_options(permutations=5, seed=9)
    settings = made.settings()
    assert set(settings) <= set(measure.defaults())
    stored = measure.stored_options(settings, permutations=5, seed=9, bootstrap=0)
    assert stored == made
    with pytest.raises(ConfigError, match=f"{name} has no option no_such_option"):
        measure.make_options(no_such_option=1)
    # The shared settings of a sweep reach the measure under the names it declares.
    shared = {
        setting: measure.defaults()[field] for setting, field in measure.settings_map().items()
    }
    assert measures.options_for(name, permutations=5, seed=9, **shared) == made


def test_statistic_null_blocks_and_p_value(name: str) -> None:
    measure = measures.get(name)
    spec = spec_for(name)
    numbers = measure.statistic(spec)
    null = np.asarray(numbers["null"])
    assert null.shape == (7,) and np.isfinite(numbers["statistic"])
    blocks = np.concatenate([measure.null(spec, 0, 3), measure.null(spec, 3, 7)])
    np.testing.assert_array_equal(blocks, null)
    assert numbers["p_value"] == measure.p_value(numbers["statistic"], null)
    assert 1 / 8 <= numbers["p_value"] <= 1
    # No permutations: no null and no p-value; another seed: another null.
    bare = measure.statistic(spec_for(name, permutations=0))
    assert "null" not in bare and bare["statistic"] == numbers["statistic"]
    assert not np.array_equal(measure.null(spec_for(name, seed=4), 0, 7), null)


def test_weighted_and_resampled_forms(name: str) -> None:
    measure = measures.get(name)
    spec = spec_for(name, permutations=0)
    statistic = measure.statistic(spec)["statistic"]
    if measure.difference_refusal() is None:
        assert abs(measure.weighted(spec)(np.ones(N)) - statistic) < 1e-9
    else:
        with pytest.raises(ConfigError):
            measure.weighted(spec)
    values = measure.resampled(spec, 5, seed=1)
    assert values.shape == (5,)
    # The same seed gives the same resamples: a peak compares layers on the same draws.
    np.testing.assert_array_equal(values, measure.resampled(spec, 5, seed=1), strict=True)


def test_a_plugin_cannot_take_a_registered_name() -> None:
    class Impostor(measures.Measure):
        name = "rsa"
        label = "not RSA"

    with pytest.raises(ConfigError, match="measure 'rsa' is registered twice"):
        measures.register(Impostor)
    with pytest.raises(ConfigError, match="unknown measure 'nope'"):
        measures.get("nope")
    assert dataclasses.is_dataclass(measures.get("rsa").make_options())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"direction": "less"}, "direction must be 'greater'"),
        ({"inputs": "similarities"}, "measures from other packages compare feature vectors"),
        ({"inputs": "vectors"}, "inputs must be 'features' or 'similarities'"),
        ({"name": "diff"}, "'diff' names another analysis"),
        ({"label": ""}, "declare a label"),
        ({"version": 0}, "version must be an integer of 1 or more"),
    ],
)
def test_registration_refuses_declarations_that_would_mislead(
    changes: dict[str, object], message: str
) -> None:
    attributes: dict[str, object] = {"name": "odd", "label": "odd", "inputs": "features"}
    plugin = type("Odd", (measures.Measure,), {**attributes, **changes})
    with pytest.raises(ConfigError, match=message):
        measures.register(plugin)
    assert "odd" not in measures.names()


def test_option_values_read_in_the_type_of_their_default() -> None:
    from semwh.measures.base import coerce

    assert coerce("1,2", (0.5,), "w") == (1.0, 2.0)
    assert coerce("a,b", ("x",), "t") == ("a", "b")
    assert coerce("99999999999999999999", 3, "k") == 99999999999999999999
    assert coerce(None, None, "m") is None and coerce("x", None, "m") == "x"
    for value, default in (("nan,1", (1.0,)), ("inf", 1.0), ("1.5", 2), ("maybe", True)):
        with pytest.raises(ConfigError, match="must be"):
            coerce(value, default, "opt")
