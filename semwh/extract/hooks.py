"""Pooling hooks: each probed module's output is pooled as soon as it is produced.

Only the pooled B x d tensor survives the hook, so full activations are never kept beyond the
module that consumes them. Pooling (DESIGN.md): 4-D outputs are averaged over space by default
(``avg``), or ``flatten``-ed, or projected with a seeded sparse random projection (``srp:D``);
token outputs (B x T x D) are averaged over tokens (``mean``) or reduced to the first token
(``cls``); 2-D (fully connected) outputs are kept as they are.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from semwh.errors import ConfigError, InputError

SPATIAL_CHOICES = ("avg", "flatten", "srp:D")
TOKEN_CHOICES = ("mean", "cls")


@dataclass(frozen=True)
class Pooling:
    """How module outputs become one vector per image.

    Attributes:
        spatial: ``avg``, ``flatten`` or ``srp`` for 4-D outputs.
        srp_dim: Output dimension of the sparse random projection.
        tokens: ``mean`` or ``cls`` for B x T x D outputs.
        seed: Seed of the random projections (one matrix per layer, derived from it).
    """

    spatial: str = "avg"
    srp_dim: int | None = None
    tokens: str = "mean"
    seed: int = 0

    @property
    def spec(self) -> str:
        return f"srp:{self.srp_dim}" if self.spatial == "srp" else self.spatial

    def label(self, ndim: int) -> str:
        """What was applied to an output with ``ndim`` dimensions (batch included)."""
        if ndim == 4:
            return self.spec
        if ndim == 3:
            return f"tokens-{self.tokens}"
        if ndim == 2:
            return "none"
        return "flatten"

    def dim(self, shape: tuple[int, ...]) -> int:
        """Pooled dimension of an output of ``shape`` (batch excluded)."""
        if len(shape) == 3:
            if self.spatial == "avg":
                return shape[0]
            if self.spatial == "srp":
                return int(self.srp_dim)  # type: ignore[arg-type]
            return math.prod(shape)
        if len(shape) == 2:
            return shape[1]
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
        outputs: Layer -> pooled B x d float32 tensor of the last forward pass.
        shapes: Layer -> output shape (batch excluded) of the last forward pass.
        order: Layers in the order their hooks fired in the last forward pass.
    """

    model: nn.Module
    layers: list[str]
    pooling: Pooling
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
            if layer in self.outputs:
                raise InputError(
                    f"module {layer!r} runs more than once per forward pass; probe a module "
                    "that runs once"
                )
            tensor = _first_tensor(output, layer)
            self.shapes[layer] = tuple(tensor.shape[1:])
            self.order.append(layer)
            self.outputs[layer] = self.pool(layer, tensor)

        return hook

    def reset(self) -> None:
        self.outputs = {}
        self.order = []

    def pool(self, layer: str, x: torch.Tensor) -> torch.Tensor:
        """Pool one module output (B x ...) to B x d float32 (detached)."""
        x = x.detach()
        if x.ndim == 4:
            if self.pooling.spatial == "avg":
                return x.mean(dim=(2, 3), dtype=torch.float32)
            flat = x.reshape(x.shape[0], -1).to(torch.float32)
            if self.pooling.spatial == "flatten":
                return flat
            return self._project(layer, flat)
        if x.ndim == 3:
            if self.pooling.tokens == "cls":
                return x[:, 0].to(torch.float32).clone()
            return x.mean(dim=1, dtype=torch.float32)
        if x.ndim == 2:
            # Copy: an in-place activation later in the network may reuse this buffer.
            return x.to(torch.float32, copy=True)
        return x.reshape(x.shape[0], -1).to(torch.float32, copy=True)

    def _project(self, layer: str, flat: torch.Tensor) -> torch.Tensor:
        matrix = self._srp.get(layer)
        if matrix is None or matrix.shape[1] != flat.shape[1] or matrix.device != flat.device:
            matrix = srp_matrix(
                flat.shape[1],
                int(self.pooling.srp_dim),
                layer_seed(self.pooling.seed, layer),  # type: ignore[arg-type]
            ).to(flat.device)
            self._srp[layer] = matrix
        return torch.sparse.mm(matrix, flat.T).T.contiguous()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
