"""Analyses stored in a real DuckDB warehouse: compare, reuse, force, sweep, FDR, views."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from scipy import stats
from sqlalchemy import select

from semwh import runs
from semwh.analyze import (
    bootstrap_rsa,
    bootstrap_two_vs_two,
    rsa,
    similarity_matrix,
    two_vs_two,
)
from semwh.config import load_settings
from semwh.errors import ConfigError, DegenerateInputError
from semwh.vectors import save_space
from semwh.warehouse.layout import Warehouse, warehouse_from_settings
from semwh.warehouse.models import (
    AnalysisRun,
    Layer,
    PermutationNull,
    Result2v2,
    ResultRSA,
    Space,
    VisionModel,
)
from semwh.warehouse.readonly import run_sql
from tests.conftest import count_rows
from tests.factories import warehouse_fixtures

pytestmark = pytest.mark.integration

N_CONCEPTS = 14
WORD_DIM = 12
NOISE = (4.0, 1.5, 0.6, 0.2)  # layer noise falls with depth, so similarity to words rises


def wnids(n: int = N_CONCEPTS) -> list[str]:
    return [f"n{1000000 + 17 * i:08d}" for i in range(n)]


def add_model(wh: Warehouse, name: str, n_layers: int) -> list[int]:
    """A vision_models row with ``n_layers`` layers; returns the layer ids in order."""
    with wh.session() as session:
        model = VisionModel(
            name=name,
            architecture="toy",
            weights="none",
            preprocessing=json.dumps({"resize": 8}),
        )
        session.add(model)
        session.flush()
        layers = [
            Layer(
                model_id=model.model_id,
                module=f"block{i}",
                depth_index=i,
                relative_depth=i / max(n_layers - 1, 1),
                output_shape=json.dumps([WORD_DIM]),
                pooling="none",
                dim=WORD_DIM,
            )
            for i in range(n_layers)
        ]
        session.add_all(layers)
        session.flush()
        return [layer.layer_id for layer in layers]


def add_layer_space(
    wh: Warehouse, model: str, index: int, layer_id: int, n_layers: int, vectors: np.ndarray
) -> str:
    name = f"{model}/block{index}"
    save_space(
        wh,
        name,
        "layer",
        wnids(len(vectors)),
        vectors,
        model=model,
        layer=f"block{index}",
        layer_id=layer_id,
        depth_index=index,
        relative_depth=index / max(n_layers - 1, 1),
    )
    return name


def build_world(wh: Warehouse, seed: int = 0) -> dict[str, object]:
    """A word space, a model whose layers are ever less noisy copies of it, and a random
    control whose layers are unrelated noise."""
    rng = np.random.default_rng(seed)
    words = rng.normal(size=(N_CONCEPTS, WORD_DIM))
    # One noise matrix shrinking with depth: each layer is the previous one made cleaner.
    noise_matrix = rng.normal(size=words.shape)
    save_space(wh, "words", "word", wnids(), words)
    layers: dict[str, list[str]] = {"toy": [], "toy-random": []}
    for model in layers:
        ids = add_model(wh, model, len(NOISE))
        for i, noise in enumerate(NOISE):
            if model == "toy":
                vectors = words + noise * noise_matrix
            else:
                vectors = rng.normal(size=words.shape)
            layers[model].append(add_layer_space(wh, model, i, ids[i], len(NOISE), vectors))
    return {"words": words, "layers": layers}


# One migrated warehouse with the world in it, built once per module; each test a copy.
template, warehouse, world = warehouse_fixtures(build_world)


count = count_rows


def matrices(wh: Warehouse, a: str, b: str, similarity: str = "pearson"):
    """Reference: the pure similarity matrices of two spaces over their shared concepts."""
    from semwh.vectors import load_space

    sa, sb = load_space(wh, a), load_space(wh, b)
    shared = sorted(set(sa.concept_ids) & set(sb.concept_ids))
    return (
        similarity_matrix(sa.subset(shared), metric=similarity, labels=shared, space=a),
        similarity_matrix(sb.subset(shared), metric=similarity, labels=shared, space=b),
        shared,
    )


@pytest.mark.parametrize(
    ("similarity", "method"),
    [("pearson", "spearman"), ("spearman", "pearson"), ("cosine", "kendall")],
)
def test_stored_rsa_equals_the_pure_function(
    warehouse: Warehouse, world, similarity: str, method: str
) -> None:
    layer = world["layers"]["toy"][1]
    row = runs.compare(
        warehouse,
        layer,
        "words",
        "rsa",
        similarity=similarity,
        method=method,
        permutations=15,
        seed=7,
    )
    sim_a, sim_b, shared = matrices(warehouse, layer, "words", similarity)
    want = rsa(sim_a, sim_b, method=method, n_permutations=15, seed=7, labels=shared)
    assert (row.similarity, row.method, row.seed) == (similarity, method, 7)
    assert row.rho == want.rho and row.p_value == want.p_value
    assert runs.permutation_null(warehouse, "rsa", row.result_id) == want.null.tolist()


@pytest.mark.parametrize(("similarity", "distance"), [("pearson", "pearson"), ("cosine", "cosine")])
def test_stored_2v2_equals_the_pure_function(
    warehouse: Warehouse, world, similarity: str, distance: str
) -> None:
    layer = world["layers"]["toy"][0]
    row = runs.compare(
        warehouse,
        layer,
        "words",
        "2v2",
        similarity=similarity,
        distance=distance,
        permutations=12,
        seed=21,
    )
    sim_a, sim_b, shared = matrices(warehouse, layer, "words", similarity)
    want = two_vs_two(sim_a, sim_b, distance=distance, n_permutations=12, seed=21)
    assert (row.accuracy, row.n_pairs, row.p_value) == (want.accuracy, want.n_pairs, want.p_value)
    assert row.n_pairs == N_CONCEPTS * (N_CONCEPTS - 1) // 2
    assert runs.permutation_null(warehouse, "2v2", row.result_id) == want.null.tolist()


def test_bootstrap_interval_is_stored_with_a_derived_stream(warehouse: Warehouse, world) -> None:
    layer = world["layers"]["toy"][2]
    sim_a, sim_b, shared = matrices(warehouse, layer, "words")
    boot_seed = runs.derive_seed(5, "bootstrap")
    for test, pure, metric in (
        ("rsa", bootstrap_rsa, {"method": "spearman"}),
        ("2v2", bootstrap_two_vs_two, {"distance": "pearson"}),
    ):
        row = runs.compare(warehouse, layer, "words", test, permutations=10, seed=5, bootstrap=50)
        want = pure(sim_a, sim_b, n_bootstrap=50, seed=boot_seed, **metric)
        assert (row.ci_low, row.ci_high) == (want.low, want.high)
        assert row.ci_low <= want.estimate <= row.ci_high
        # The bootstrap has its own stream: the permutations and p-value are those of the
        # same request without one, which the stored row therefore answers too.
        plain = runs.compare(warehouse, layer, "words", test, permutations=10, seed=5, force=True)
        assert plain.ci_low is None
        assert plain.p_value == row.p_value and plain.null_mean == row.null_mean
        again = runs.compare(warehouse, layer, "words", test, permutations=10, seed=5, bootstrap=50)
        assert again.result_id != plain.result_id and again.ci_low == row.ci_low
        # Without a bootstrap the newest row of the same test answers, with or without one.
        reused = runs.compare(warehouse, layer, "words", test, permutations=10, seed=5)
        assert reused.result_id == max(plain.result_id, again.result_id)


def test_compare_stores_provenance_and_null(warehouse: Warehouse, world) -> None:
    layer = world["layers"]["toy"][2]
    row = runs.compare(warehouse, layer, "words", "rsa", permutations=30, seed=11)
    shared = wnids()
    assert row.n_concepts == N_CONCEPTS
    assert row.concepts_sha256 == hashlib.sha256("\n".join(shared).encode()).hexdigest()
    assert (row.seed, row.n_permutations, row.method, row.similarity) == (
        11,
        30,
        "spearman",
        "pearson",
    )
    with warehouse.session() as session:
        run = session.get(AnalysisRun, row.analysis_id)
        spaces = {s.name: s.content_sha256 for s in session.scalars(select(Space))}
        null = session.get(PermutationNull, ("rsa", row.result_id))
    assert run.kind == "rsa" and run.seed == 11 and run.device == "cpu"
    assert json.loads(run.input_hashes) == {layer: spaces[layer], "words": spaces["words"]}
    versions = json.loads(run.library_versions)
    assert set(versions) == {"numpy", "scipy", "torch"} and versions["numpy"] == np.__version__
    params = json.loads(run.params)
    assert params["permutations"] == 30 and params["method"] == "spearman"
    assert run.params_sha256 == runs.provenance.params_sha256(params)
    assert run.seconds is not None and run.seconds >= 0
    values = np.array(json.loads(null.values))
    assert len(values) == 30 and null.seed == 11
    assert row.null_mean == pytest.approx(values.mean(), abs=1e-12)
    assert row.null_q95 == pytest.approx(np.quantile(values, 0.95), abs=1e-12)
    assert row.p_value == pytest.approx((1 + np.sum(values >= row.rho)) / 31, abs=1e-12)


def test_identical_analysis_is_reused_and_force_adds_a_row(warehouse: Warehouse, world) -> None:
    layer = world["layers"]["toy"][1]
    first = runs.compare(warehouse, layer, "words", "2v2", permutations=20, seed=3)
    runs_before = count(warehouse, AnalysisRun)
    again = runs.compare(warehouse, layer, "words", "2v2", permutations=20, seed=3)
    assert again.result_id == first.result_id
    assert count(warehouse, AnalysisRun) == runs_before
    assert count(warehouse, Result2v2) == 1

    # Other options are another analysis, stored beside the first.
    other = runs.compare(warehouse, layer, "words", "2v2", permutations=20, seed=4)
    assert other.result_id != first.result_id and count(warehouse, Result2v2) == 2

    forced = runs.compare(warehouse, layer, "words", "2v2", permutations=20, seed=3, force=True)
    assert forced.result_id not in (first.result_id, other.result_id)
    assert forced.accuracy == first.accuracy and forced.p_value == first.p_value
    # Results are history: the forced row joins the first, which stays as it was.
    assert count(warehouse, Result2v2) == 3
    with warehouse.session() as session:
        assert session.get(Result2v2, first.result_id) is not None
        assert session.get(PermutationNull, ("2v2", first.result_id)) is not None
        assert session.get(PermutationNull, ("2v2", forced.result_id)) is not None
    # The newest identical row answers later requests.
    again = runs.compare(warehouse, layer, "words", "2v2", permutations=20, seed=3)
    assert again.result_id == forced.result_id


def test_missing_seed_is_drawn_recorded_and_reused(warehouse: Warehouse, world) -> None:
    layer = world["layers"]["toy"][0]
    row = runs.compare(warehouse, layer, "words", "rsa", permutations=10)
    assert row.seed is not None and 0 <= row.seed < 2**63
    assert runs.compare(warehouse, layer, "words", "rsa", permutations=10).result_id == (
        row.result_id
    )
    # The recorded seed reproduces the numbers exactly.
    again = runs.compare(warehouse, layer, "words", "rsa", permutations=10, seed=row.seed)
    assert again.result_id == row.result_id
    # Without permutations or bootstrap nothing is random, so no seed is recorded.
    plain = runs.compare(warehouse, layer, "words", "rsa")
    assert plain.seed is None and plain.p_value is None and plain.n_permutations == 0
    forced = runs.compare(warehouse, layer, "words", "rsa", permutations=10, force=True)
    assert forced.result_id != row.result_id
    with warehouse.session() as session:
        assert session.get(ResultRSA, row.result_id) is not None


def test_changed_space_content_is_not_reused(warehouse: Warehouse, world) -> None:
    layer = world["layers"]["toy"][3]
    row = runs.compare(warehouse, layer, "words", "rsa", permutations=5, seed=1)
    rng = np.random.default_rng(5)
    save_space(warehouse, "words", "word", wnids(), rng.normal(size=(N_CONCEPTS, 6)), replace=True)
    new = runs.compare(warehouse, layer, "words", "rsa", permutations=5, seed=1)
    assert new.result_id != row.result_id and new.rho != row.rho
    # The old version's row stays as history, with the hash of the content it came from.
    assert count(warehouse, ResultRSA) == 2
    assert row.space_b_sha256 != new.space_b_sha256


def test_options_are_checked_before_loading(warehouse: Warehouse, world) -> None:
    layer = world["layers"]["toy"][0]
    with pytest.raises(ConfigError, match=r"unknown similarity metric 'pearsn' \(choose pearson"):
        runs.compare(warehouse, layer, "words", "rsa", similarity="pearsn")
    with pytest.raises(ConfigError, match=r"unknown RSA method 'tau'"):
        runs.compare(warehouse, layer, "words", "rsa", method="tau")
    with pytest.raises(ConfigError, match=r"unknown 2 vs 2 distance 'l1'"):
        runs.compare(warehouse, layer, "words", "2v2", distance="l1")
    with pytest.raises(ConfigError, match=r"unknown test '1v2'"):
        runs.compare(warehouse, layer, "words", "1v2")


def test_too_few_shared_concepts_names_both_spaces(warehouse: Warehouse, world) -> None:
    rng = np.random.default_rng(2)
    save_space(warehouse, "few", "external", wnids()[:3] + ["n09999999"], rng.normal(size=(4, 5)))
    with pytest.raises(DegenerateInputError) as info:
        runs.compare(warehouse, "few", "words", "2v2")
    message = str(info.value)
    assert "'few'" in message and "'words'" in message and "share 3 concepts" in message
    assert wnids()[0] in message


def test_constant_concept_vector_names_concept_and_spaces(warehouse: Warehouse, world) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(N_CONCEPTS, 5))
    vectors[4] = 2.0
    save_space(warehouse, "flat", "external", wnids(), vectors)
    for test in ("rsa", "2v2"):
        with pytest.raises(DegenerateInputError) as info:
            runs.compare(warehouse, "flat", "words", test)
        message = str(info.value)
        assert wnids()[4] in message and "'flat'" in message and "'words'" in message


def reversed_mapper(fn, specs):
    """A mapper that computes in reverse order, as a parallel backend might finish."""
    specs = list(specs)
    return list(reversed([fn(spec) for spec in reversed(specs)]))


def test_sweep_fdr_seeds_and_members(warehouse: Warehouse, world) -> None:
    result = runs.sweep(warehouse, ["toy"], ["words"], permutations=25, seed=42)
    layers = world["layers"]["toy"] + world["layers"]["toy-random"]
    assert len(result.rows) == len(layers) * 2 and result.computed == len(result.rows)
    assert {(r.space_a, runs.result_rows.test_of(r)) for r in result.rows} == {
        (layer, test) for layer in layers for test in ("2v2", "rsa")
    }
    p = np.array([r.p_value for r in result.rows])
    expected = stats.false_discovery_control(p, method="bh")
    fdr = [result.p_fdr[(runs.result_rows.test_of(r), r.result_id)] for r in result.rows]
    np.testing.assert_allclose(fdr, expected, rtol=0, atol=1e-12)
    stored = run_sql(
        warehouse,
        f"SELECT test, result_id, p_fdr FROM sweep_results WHERE sweep_id = {result.sweep_id}",
    ).table.to_pylist()
    assert {(r["test"], r["result_id"]): r["p_fdr"] for r in stored} == result.p_fdr
    for row in result.rows:
        assert row.seed == runs.derive_seed(42, runs.result_rows.test_of(row), row.space_a, "words")

    with warehouse.session() as session:
        run = session.get(AnalysisRun, result.analysis_id)
    params = json.loads(run.params)
    assert run.kind == "sweep" and run.seed == 42
    assert params["swept_models"] == ["toy", "toy-random"]
    assert params["sweep_id"] == result.sweep_id

    # A second sweep finds every comparison stored, computes nothing, same rows: it is the
    # same family, so the stored sweep answers and no new one is written.
    again = runs.sweep(warehouse, ["toy"], ["words"], permutations=25, seed=42)
    assert again.computed == 0 and again.reused and again.sweep_id == result.sweep_id
    assert [r.result_id for r in again.rows] == [r.result_id for r in result.rows]
    assert again.p_fdr == result.p_fdr


def test_sweep_is_identical_whichever_order_the_engine_runs(template, tmp_path) -> None:
    outcomes = []
    for name, mapper in (("a", map), ("b", reversed_mapper)):
        shutil.copytree(template[0], tmp_path / name)
        wh = warehouse_from_settings(load_settings(tmp_path / name))
        result = runs.sweep(
            wh, ["toy"], ["words"], permutations=15, seed=9, include_random=False, mapper=mapper
        )
        outcomes.append(
            [
                (
                    r.space_a,
                    r.seed,
                    r.p_value,
                    result.p_fdr[(runs.result_rows.test_of(r), r.result_id)],
                    getattr(r, "rho", None),
                    r.null_mean,
                )
                for r in result.rows
            ]
        )
    assert outcomes[0] == outcomes[1]


def test_layer_curves_rise_with_depth(warehouse: Warehouse, world) -> None:
    runs.sweep(warehouse, ["toy"], ["words"], permutations=40, seed=5, include_random=True)
    table = run_sql(
        warehouse,
        "SELECT model, layer, depth_index, relative_depth, word_space, accuracy_2v2, p_2v2, "
        "rho_rsa, p_rsa, p_fdr_2v2 FROM layer_curves ORDER BY model, depth_index",
    ).table.to_pylist()
    assert [(r["model"], r["layer"]) for r in table] == [
        (m, f"block{i}") for m in ("toy", "toy-random") for i in range(len(NOISE))
    ]
    toy = [r for r in table if r["model"] == "toy"]
    assert all(r["word_space"] == "words" for r in table)
    assert [r["relative_depth"] for r in toy] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    accuracy = [r["accuracy_2v2"] for r in toy]
    rho = [r["rho_rsa"] for r in toy]
    assert accuracy == sorted(accuracy) and accuracy[-1] > 0.9
    assert rho == sorted(rho) and rho[-1] > 0.8
    assert toy[-1]["p_2v2"] == pytest.approx(1 / 41) and toy[-1]["p_fdr_2v2"] is not None
    with warehouse.session() as session:
        stored = {
            r.space_a: r.accuracy
            for r in session.scalars(select(Result2v2).where(Result2v2.space_b == "words"))
        }
    assert accuracy == [stored[f"toy/block{i}"] for i in range(len(NOISE))]


def test_sweep_without_random_controls(warehouse: Warehouse, world) -> None:
    result = runs.sweep(
        warehouse, ["toy"], ["words"], tests=["rsa"], permutations=0, include_random=False
    )
    assert [r.space_a for r in result.rows] == world["layers"]["toy"]
    assert result.seed is None and all(p is None for p in result.p_fdr.values())


def test_sweep_skips_degenerate_layers_unless_strict(warehouse: Warehouse, world) -> None:
    ids = add_model(warehouse, "flat", 2)
    rng = np.random.default_rng(8)
    good = add_layer_space(warehouse, "flat", 0, ids[0], 2, rng.normal(size=(N_CONCEPTS, 6)))
    constant = rng.normal(size=(N_CONCEPTS, 6))
    constant[[2, 5]] = 1.5
    bad = add_layer_space(warehouse, "flat", 1, ids[1], 2, constant)
    result = runs.sweep(warehouse, ["flat"], ["words"], tests=["rsa"], permutations=5, seed=1)
    assert [r.space_a for r in result.rows] == [good]
    assert [(s.space_a, s.test) for s in result.skipped] == [(bad, "rsa")]
    assert wnids()[2] in result.skipped[0].reason and wnids()[5] in result.skipped[0].reason
    assert f"'{bad}'" in result.skipped[0].reason and "'words'" in result.skipped[0].reason
    with warehouse.session() as session:
        params = json.loads(session.get(AnalysisRun, result.analysis_id).params)
    assert params["skipped"][0]["space_a"] == bad
    with pytest.raises(DegenerateInputError, match=wnids()[2]):
        runs.sweep(warehouse, ["flat"], ["words"], tests=["rsa"], permutations=5, strict=True)
