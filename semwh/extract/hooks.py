"""Pooling hooks: each probed module's output is pooled as soon as it is produced.

Only the pooled B x d tensor survives the hook, so full activations are never kept beyond the
module that consumes them. Pooling (DESIGN.md) follows each output's layout
(:mod:`semwh.extract.layouts`): feature maps, channels-first or channels-last, are averaged
over space by default (``avg``), or ``flatten``-ed in channels-first order, or projected with a
seeded sparse random projection (``srp:D``); token outputs are averaged over their patch tokens
(``mean``, class/register/distillation tokens left out) or reduced to the first token
(``cls``); fully connected outputs are kept as they are.

Without layouts (``layouts=None``) the hooks only record the order and shapes of the outputs:
that is the probe forward pass whose shapes the layouts are checked against.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from semwh.errors import ConfigError, InputError
from semwh.extract.layouts import Layout

SPATIAL_CHOICES = ("avg", "flatten", "srp:D")
TOKEN_CHOICES = ("mean", "cls")


@dataclass(frozen=True)
class Pooling:
    """How module outputs become one vector per image.

    Attributes:
        spatial: ``avg``, ``flatten`` or ``srp`` for 4-D outputs.
        srp_dim: Output dimension of the sparse random projection.
        tokens: ``mean`` (over patch tokens) or ``cls`` (the class token; outputs without
            one, such as patch embeddings, are averaged and labelled ``tokens-mean``).
        seed: Seed of the random projections (one matrix per layer, derived from it).
    """

    spatial: str = "avg"
    srp_dim: int | None = None
    tokens: str = "mean"
    seed: int = 0

    @property
    def spec(self) -> str:
        return f"srp:{self.srp_dim}" if self.spatial == "srp" else self.spatial

    def label(self, layout: Layout) -> str:
        """What is applied to an output of ``layout`` (the ``layers.pooling`` column)."""
        if layout.kind in ("channels_first", "channels_last"):
            return self.spec
        if layout.kind in ("tokens", "sequence_first"):
            # cls takes the class token where there is one; outputs without (a patch
            # embedding) are averaged, and say so.
            return "tokens-mean" if layout.prefix == 0 else f"tokens-{self.tokens}"
        if layout.kind == "vector":
            return "none"
        return "flatten"

    def dim(self, layout: Layout, shape: tuple[int, ...]) -> int:
        """Pooled dimension of an output of ``shape`` (batch excluded) and ``layout``."""
        if layout.kind in ("channels_first", "channels_last"):
            if self.spatial == "avg":
                return shape[0] if layout.kind == "channels_first" else shape[-1]
            if self.spatial == "srp":
                return int(self.srp_dim)  # type: ignore[arg-type]
            return math.prod(shape)
        if layout.kind in ("tokens", "sequence_first", "vector"):
            return shape[-1]
        return math.prod(shape)

    def to_dict(self) -> dict[str, Any]:
        return {"spatial": self.spec, "tokens": self.tokens, "seed": self.seed}


def parse_pooling(spec: str = "avg", tokens: str = "mean", seed: int = 0) -> Pooling:
    """Parse ``avg``, ``flatten`` or ``srp:D`` and a token rule ``mean`` or ``cls``.

    Raises:
        ConfigError: Unknown pooling or a bad projection dimension.
    """
    spec = spec.strip().lower()
    if tokens not in TOKEN_CHOICES:
        raise ConfigError(f"unknown token pooling {tokens!r} (choose {', '.join(TOKEN_CHOICES)})")
    if spec in ("avg", "mean", "gap"):
        return Pooling("avg", None, tokens, seed)
    if spec == "flatten":
        return Pooling("flatten", None, tokens, seed)
    if spec.startswith("srp:"):
        try:
            dim = int(spec.split(":", 1)[1])
        except ValueError:
            dim = 0
        if dim <= 0:
            raise ConfigError(f"pooling {spec!r}: srp needs a positive dimension, e.g. srp:1024")
        return Pooling("srp", dim, tokens, seed)
    raise ConfigError(f"unknown pooling {spec!r} (choose {', '.join(SPATIAL_CHOICES)})")


def srp_matrix(in_dim: int, out_dim: int, seed: int) -> torch.Tensor:
    """A very sparse random projection (Li, Hastie & Church 2006), in_dim -> out_dim.

    Entries are +-sqrt(s / out_dim) with probability 1/(2s) each and 0 otherwise, with
    s = sqrt(in_dim), so squared norms are preserved in expectation. Returned as a sparse COO
    tensor of shape (out_dim, in_dim).
    """
    rng = np.random.default_rng(seed)
    s = math.sqrt(in_dim)
    counts = rng.binomial(in_dim, 1.0 / s, size=out_dim)
    rows, cols = [], []
    for j, count in enumerate(counts):
        idx = np.unique(rng.integers(0, in_dim, size=int(count)))
        rows.append(np.full(idx.size, j, dtype=np.int64))
        cols.append(idx.astype(np.int64))
    row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    col = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=row.size)
    values = signs * np.float32(math.sqrt(s / out_dim))
    index = torch.from_numpy(np.stack([row, col]))
    return torch.sparse_coo_tensor(
        index, torch.from_numpy(values), (out_dim, in_dim), check_invariants=False
    ).coalesce()


def layer_seed(seed: int, layer: str) -> int:
    """A per-layer seed derived from the run's seed and the module path."""
    digest = hashlib.sha256(f"{seed}:{layer}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _first_tensor(output: Any, layer: str) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise InputError(
        f"module {layer!r} returns {type(output).__name__}, not a tensor: probe another module"
    )


@dataclass
class PoolingHooks:
    """Forward hooks that pool the outputs of ``layers`` into ``outputs`` as they are produced.

    Attributes:
        layouts: Layer -> layout of its output; None records shapes only (the probe pass).
        outputs: Layer -> pooled B x d float32 tensor of the last forward pass.
        shapes: Layer -> output shape (batch axis included) of the last forward pass.
        order: Layers in the order their hooks fired in the last forward pass.
    """

    model: nn.Module
    layers: list[str]
    pooling: Pooling
    layouts: dict[str, Layout] | None = None
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    _handles: list[Any] = field(default_factory=list)
    _srp: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        modules = dict(self.model.named_modules())
        for layer in self.layers:
            if layer not in modules:
                raise ConfigError(f"model has no module {layer!r}")
            self._handles.append(modules[layer].register_forward_hook(self._hook(layer)))

    def _hook(self, layer: str):  # type: ignore[no-untyped-def]
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if layer in self.shapes:
                raise InputError(
                    f"module {layer!r} runs more than once per forward pass; probe a module "
                    "that runs once"
                )
            tensor = _first_tensor(output, layer)
            self.shapes[layer] = tuple(tensor.shape)
            self.order.append(layer)
            if self.layouts is not None:
                self.outputs[layer] = self.pool(layer, tensor)

        return hook

    def reset(self) -> None:
        self.outputs = {}
        self.shapes = {}
        self.order = []

    def pool(self, layer: str, x: torch.Tensor) -> torch.Tensor:
        """Pool one module output to B x d float32 (detached) by the layer's layout."""
        layout = (self.layouts or {}).get(layer)
        if layout is None:
            raise ConfigError(f"no layout known for layer {layer!r}")
        return pool_output(x, layout, self.pooling, lambda flat: self._project(layer, flat))

    def _project(self, layer: str, flat: torch.Tensor) -> torch.Tensor:
        matrix = self._srp.get(layer)
        if matrix is None or matrix.shape[1] != flat.shape[1] or matrix.device != flat.device:
            matrix = srp_matrix(
                flat.shape[1],
                int(self.pooling.srp_dim),  # type: ignore[arg-type]
                layer_seed(self.pooling.seed, layer),
            ).to(flat.device)
            self._srp[layer] = matrix
        return torch.sparse.mm(matrix, flat.T).T.contiguous()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def pool_output(
    x: torch.Tensor,
    layout: Layout,
    pooling: Pooling,
    project: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """One module output (any layout) to B x d float32, detached and never a view of it.

    Channels-last maps are pooled as the channels-first map they hold (so ``flatten`` and
    ``srp`` see the same vector either way); sequence-first tokens as batch-first tokens.
    """
    x = x.detach()
    kind = layout.kind
    if kind == "channels_last":
        x, kind = x.movedim(-1, 1), "channels_first"
    if kind == "sequence_first":
        x, kind = x.transpose(0, 1), "tokens"
    if kind == "channels_first":
        if pooling.spatial == "avg":
            return x.mean(dim=tuple(range(2, x.ndim)), dtype=torch.float32)
        flat = x.reshape(x.shape[0], -1).to(torch.float32)
        if pooling.spatial == "flatten":
            return flat if flat.data_ptr() != x.data_ptr() else flat.clone()
        if project is None:
            raise ConfigError("srp pooling needs a projection")
        return project(flat)
    if kind == "tokens":
        if pooling.tokens == "cls" and layout.prefix > 0:
            return x[:, 0].to(torch.float32).clone()
        return x[:, layout.prefix :].mean(dim=1, dtype=torch.float32)
    # Copy: an in-place activation later in the network may reuse this buffer.
    return x.reshape(x.shape[0], -1).to(torch.float32, copy=True)
