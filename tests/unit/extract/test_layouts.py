"""Pooling by layout against loops written out by hand; layouts declared, inferred, refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semwh.errors import ConfigError
from semwh.extract.hooks import Pooling, pool_output
from semwh.extract.layouts import (
    CHANNELS_FIRST,
    CHANNELS_LAST,
    Layout,
    infer_layout,
    parse_layout,
    parse_overrides,
    resolve_layouts,
)


def test_channels_last_pools_like_its_channels_first_map() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 5, 7)).astype(np.float32)  # B x H x W x C
    got = pool_output(torch.from_numpy(x), CHANNELS_LAST, Pooling()).numpy()
    for b in range(2):
        for c in range(7):
            ref = sum(float(x[b, i, j, c]) for i in range(5) for j in range(5)) / 25
            assert got[b, c] == pytest.approx(ref, rel=1e-6)
    nchw = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    flat = pool_output(torch.from_numpy(x), CHANNELS_LAST, Pooling("flatten")).numpy()
    assert np.array_equal(flat, pool_output(nchw, CHANNELS_FIRST, Pooling("flatten")).numpy())
    assert Pooling().dim(CHANNELS_LAST, (5, 5, 7)) == 7


def test_token_rules_leave_out_prefix_tokens() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 9, 4)).astype(np.float32)  # cls, 2 registers, 6 patches
    layout = Layout("tokens", 3)
    mean = pool_output(torch.from_numpy(x), layout, Pooling()).numpy()
    for b in range(3):
        for d in range(4):
            ref = sum(float(x[b, t, d]) for t in range(3, 9)) / 6
            assert mean[b, d] == pytest.approx(ref, rel=1e-6)
    cls = pool_output(torch.from_numpy(x), layout, Pooling(tokens="cls")).numpy()
    assert np.array_equal(cls, x[:, 0])
    seq = torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2)))  # T x B x D
    got = pool_output(seq, Layout("sequence_first", 3), Pooling()).numpy()
    np.testing.assert_allclose(got, mean, rtol=1e-6)
    # cls where there is no class token (a patch embedding): the patch mean, labelled so.
    plain = pool_output(torch.from_numpy(x), Layout("tokens"), Pooling(tokens="cls")).numpy()
    np.testing.assert_allclose(plain, x.mean(axis=1), rtol=1e-6)
    assert Pooling(tokens="cls").label(Layout("tokens")) == "tokens-mean"
    assert Pooling(tokens="cls").label(layout) == "tokens-cls"


def test_parse_layouts_and_overrides() -> None:
    assert parse_layout("tokens:1") == Layout("tokens", 1)
    assert str(parse_layout("NHWC")) == "channels_last"
    assert str(Layout("sequence_first", 2)) == "sequence_first:2"
    with pytest.raises(ConfigError, match="unknown layout 'rows'"):
        parse_layout("rows")
    with pytest.raises(ConfigError, match="only tokens and sequence_first"):
        parse_layout("vector:1")
    overrides = parse_overrides("blocks.*=tokens:1,stem=channels_first,channels_last")
    assert overrides.find("blocks.3") == Layout("tokens", 1)
    assert overrides.find("head") is None and overrides.fallback == CHANNELS_LAST
    assert parse_overrides({"head": "vector"}).find("head") == Layout("vector")


def test_inference_from_probe_shapes() -> None:
    # Square images: the spatial axes are the two equal ones.
    assert infer_layout((2, 64, 56, 56), prefer_4d=None, num_patches=None) == CHANNELS_FIRST
    assert infer_layout((2, 56, 56, 96), prefer_4d=None, num_patches=None) == CHANNELS_LAST
    assert infer_layout((2, 7, 7, 7), prefer_4d=None, num_patches=None) is None
    assert infer_layout((2, 7, 7, 7), prefer_4d=CHANNELS_LAST, num_patches=None) == CHANNELS_LAST
    assert infer_layout((2, 197, 8), prefer_4d=None, num_patches=196) == Layout("tokens", 1)
    assert infer_layout((201, 2, 8), prefer_4d=None, num_patches=196) == Layout("sequence_first", 5)
    assert infer_layout((2, 50, 8), prefer_4d=None, num_patches=None) is None


def test_ambiguous_and_contradicted_layouts_are_refused() -> None:
    def rule(_layer: str, shape: tuple[int, ...]) -> Layout | None:
        return infer_layout(shape, prefer_4d=None, num_patches=None)

    with pytest.raises(ConfigError, match=r"net/enc.*ambiguous.*--layout 'enc=LAYOUT'"):
        resolve_layouts("net", {"enc": (2, 50, 8)}, rule)
    got = resolve_layouts("net", {"enc": (2, 50, 8)}, rule, parse_overrides("enc=tokens"))
    assert got == {"enc": Layout("tokens")}
    with pytest.raises(ConfigError, match="no batch axis at position 0"):
        resolve_layouts("net", {"enc": (50, 2, 8)}, rule, parse_overrides("enc=tokens"))
    with pytest.raises(ConfigError, match="unequal axes 1 and 2"):
        resolve_layouts("net", {"m": (2, 64, 7, 7)}, rule, parse_overrides("m=channels_last"))
