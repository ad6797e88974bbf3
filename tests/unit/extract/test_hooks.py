"""Pooling hooks against slow, obviously-right references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from semwh.errors import ConfigError, InputError
from semwh.extract.hooks import Pooling, PoolingHooks, parse_pooling, srp_matrix
from semwh.extract.layouts import CHANNELS_FIRST, VECTOR, Layout

# Layouts by rank, as the hooks pooled before layouts were declared.
BY_RANK = {4: CHANNELS_FIRST, 3: Layout("tokens"), 2: VECTOR}


# The layers these tests pool: feature maps, tokens ("c" with a class token) and vectors.
LAYOUTS = {
    "a": CHANNELS_FIRST,
    "layer": CHANNELS_FIRST,
    "t": Layout("tokens"),
    "c": Layout("tokens", 1),
    "f": VECTOR,
}


def _hooks(model: nn.Module, layers: list[str], pooling: Pooling) -> PoolingHooks:
    return PoolingHooks(model, layers, pooling, {**LAYOUTS, "0": VECTOR})


def test_parse_pooling_choices_and_errors() -> None:
    assert parse_pooling("avg").spec == "avg"
    assert parse_pooling("flatten").spec == "flatten"
    srp = parse_pooling("srp:64", "cls", seed=3)
    assert (srp.spatial, srp.srp_dim, srp.tokens, srp.seed) == ("srp", 64, "cls", 3)
    with pytest.raises(ConfigError, match="unknown pooling 'max'"):
        parse_pooling("max")
    with pytest.raises(ConfigError, match="positive dimension"):
        parse_pooling("srp:0")
    with pytest.raises(ConfigError, match="token pooling"):
        parse_pooling("avg", "first")


def test_avg_flatten_tokens_and_fc_against_loops() -> None:
    rng = np.random.default_rng(0)
    x4 = rng.normal(size=(3, 5, 4, 6)).astype(np.float32)
    x3 = rng.normal(size=(3, 7, 5)).astype(np.float32)
    x2 = rng.normal(size=(3, 9)).astype(np.float32)
    hooks = _hooks(nn.Identity(), [], Pooling())
    avg = hooks.pool("a", torch.from_numpy(x4)).numpy()
    for b in range(3):
        for c in range(5):
            ref = sum(float(x4[b, c, i, j]) for i in range(4) for j in range(6)) / 24
            assert avg[b, c] == pytest.approx(ref, rel=1e-6)
    flat = _hooks(nn.Identity(), [], Pooling("flatten")).pool("a", torch.from_numpy(x4))
    assert flat.shape == (3, 120)
    assert np.array_equal(flat.numpy()[1], x4[1].reshape(-1))
    mean = hooks.pool("t", torch.from_numpy(x3)).numpy()
    np.testing.assert_allclose(mean, x3.mean(axis=1), rtol=1e-6)
    cls = _hooks(nn.Identity(), [], Pooling(tokens="cls")).pool("c", torch.from_numpy(x3))
    assert np.array_equal(cls.numpy(), x3[:, 0])
    fc = hooks.pool("f", torch.from_numpy(x2))
    assert np.array_equal(fc.numpy(), x2)
    assert Pooling().dim(CHANNELS_FIRST, (5, 4, 6)) == 5
    assert Pooling("flatten").dim(CHANNELS_FIRST, (5, 4, 6)) == 120
    assert Pooling("srp", 16).dim(CHANNELS_FIRST, (5, 4, 6)) == 16
    assert Pooling().dim(Layout("tokens"), (7, 5)) == 5
    assert Pooling().dim(VECTOR, (9,)) == 9
    assert [Pooling().label(BY_RANK[n]) for n in (4, 3, 2)] == ["avg", "tokens-mean", "none"]


def test_fc_output_is_copied_before_in_place_activation() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(inplace=True))
    hooks = _hooks(model, ["0"], Pooling())
    x = torch.tensor([[1.0, -2.0, 3.0, -4.0]])
    with torch.no_grad():
        pre = model[0](x).clone()
        hooks.reset()
        model(x)
    assert torch.equal(hooks.outputs["0"], pre)  # negatives survive the in-place ReLU


def test_srp_matches_dense_reference_and_is_seeded() -> None:
    in_dim, out_dim = 400, 32
    a = srp_matrix(in_dim, out_dim, seed=5)
    b = srp_matrix(in_dim, out_dim, seed=5)
    c = srp_matrix(in_dim, out_dim, seed=6)
    assert torch.equal(a.to_dense(), b.to_dense())
    assert not torch.equal(a.to_dense(), c.to_dense())
    dense = a.to_dense().numpy().astype(np.float64)
    values = np.unique(np.abs(dense[dense != 0]))
    assert values.size == 1 and values[0] == pytest.approx(np.sqrt(np.sqrt(in_dim) / out_dim))
    x = np.random.default_rng(1).normal(size=(2, 4, 10, 10)).astype(np.float32)
    hooks = _hooks(nn.Identity(), [], Pooling("srp", out_dim, seed=5))
    got = hooks.pool("layer", torch.from_numpy(x)).numpy()
    from semwh.extract.hooks import layer_seed

    ref_matrix = srp_matrix(in_dim, out_dim, layer_seed(5, "layer")).to_dense().numpy()
    ref = x.reshape(2, -1).astype(np.float64) @ ref_matrix.T.astype(np.float64)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_srp_preserves_norms_on_average() -> None:
    in_dim, out_dim = 2500, 512
    m = srp_matrix(in_dim, out_dim, seed=0).to_dense().double()
    x = torch.randn(200, in_dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ratio = ((x @ m.T).norm(dim=1) ** 2 / x.norm(dim=1) ** 2).mean().item()
    assert ratio == pytest.approx(1.0, abs=0.05)


def test_module_called_twice_is_an_error() -> None:
    relu = nn.ReLU()
    model = nn.Sequential(relu, nn.Linear(2, 2), relu)
    _hooks(model, ["0"], Pooling())
    with pytest.raises(InputError, match="more than once"):
        model(torch.ones(1, 2))


def test_unknown_module_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no module 'nope'"):
        _hooks(nn.Sequential(nn.ReLU()), ["nope"], Pooling())
