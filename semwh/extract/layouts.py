"""Output layouts: which axes of a probed module's output are batch, space, tokens and channels.

Pooling must know them: averaging a Swin stage (batch x height x width x channels) over the
axes of a channels-first map would average over width and channels. A layout is declared by
the model's source (torchvision, timm, Hugging Face, a user module) or by the user
(``--layout``), and always checked against the output of a probe forward pass (a batch of
:data:`PROBE_BATCH` square images) before anything is stored; an output whose layout cannot be
told is an error that names the layer and the fix, never a mean over a guessed axis.

Layouts (the ``layers.layout`` column):

``channels_first``  batch x channels x space... (CNN feature maps; global average over space)
``channels_last``   batch x height x width x channels (Swin stages; average over height, width)
``tokens[:P]``      batch x tokens x dim; the first P tokens are class, register or
                    distillation tokens (``mean`` averages the other, patch tokens; ``cls``
                    takes token 0)
``sequence_first[:P]``  tokens x batch x dim (``nn.MultiheadAttention`` without batch_first)
``vector``          batch x features (fully connected outputs, kept as they are)
``flat``            any other rank, flattened per image
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from semwh.errors import ConfigError

#: Images in the probe forward pass: a batch axis of 2 tells batch-first from sequence-first.
PROBE_BATCH = 2
#: At most this many leading non-patch tokens (class, distillation, registers) are recognised.
MAX_PREFIX_TOKENS = 16

KINDS = ("channels_first", "channels_last", "tokens", "sequence_first", "vector", "flat")
CHOICES = "channels_first, channels_last, tokens[:P], sequence_first[:P], vector"


@dataclass(frozen=True)
class Layout:
    """The layout of one module output.

    Attributes:
        kind: One of :data:`KINDS`.
        prefix: Leading non-patch tokens (``tokens`` and ``sequence_first`` only).
    """

    kind: str
    prefix: int = 0

    def __str__(self) -> str:
        if self.kind in ("tokens", "sequence_first") and self.prefix:
            return f"{self.kind}:{self.prefix}"
        return self.kind

    @property
    def batch_axis(self) -> int:
        return 1 if self.kind == "sequence_first" else 0

    def stored_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The output's shape without its batch axis, other axes in the output's own order."""
        b = self.batch_axis
        return tuple(shape[:b]) + tuple(shape[b + 1 :])

    def is_legacy(self, stored_shape: tuple[int, ...], tokens: str = "mean") -> bool:
        """Whether semwh before layouts pooled this output the same way (by rank alone).

        It averaged every 4-D output over axes 2 and 3, every 3-D output over axis 1 (all
        tokens; ``cls`` took token 0 of any), kept 2-D outputs and flattened the rest.
        """
        ndim = len(stored_shape) + 1
        if self.kind == "channels_first":
            return ndim == 4
        if self.kind == "tokens":
            return ndim == 3 and self.prefix == 0 and tokens == "mean"
        if self.kind == "vector":
            return ndim == 2
        if self.kind == "flat":
            return ndim not in (2, 3, 4)
        return False


CHANNELS_FIRST = Layout("channels_first")
CHANNELS_LAST = Layout("channels_last")
VECTOR = Layout("vector")


def parse_layout(text: str) -> Layout:
    """Parse ``channels_first``, ``tokens:1``, ... (see the module docstring).

    Raises:
        ConfigError: An unknown layout or a bad token count.
    """
    raw = text.strip().lower().replace("-", "_")
    kind, _, count = raw.partition(":")
    aliases = {"nchw": "channels_first", "nhwc": "channels_last", "nld": "tokens", "lnd": ""}
    kind = aliases.get(kind, kind) or "sequence_first"
    if kind not in KINDS:
        raise ConfigError(f"unknown layout {text!r} (choose {CHOICES})")
    prefix = 0
    if count:
        if kind not in ("tokens", "sequence_first"):
            raise ConfigError(f"layout {text!r}: only tokens and sequence_first take :P")
        try:
            prefix = int(count)
        except ValueError:
            prefix = -1
        if prefix < 0:
            raise ConfigError(
                f"layout {text!r}: P is the number of class/register tokens, e.g. tokens:1"
            )
    return Layout(kind, prefix)


@dataclass(frozen=True)
class LayoutOverrides:
    """Layouts the user declares: ``PATTERN=LAYOUT`` entries and an optional fallback.

    Attributes:
        rules: (glob pattern of module paths, layout), first match wins; they replace what
            the source would say.
        fallback: Layout of outputs whose layout the source cannot tell.
    """

    rules: tuple[tuple[str, Layout], ...] = ()
    fallback: Layout | None = None

    def __bool__(self) -> bool:
        return bool(self.rules) or self.fallback is not None

    def find(self, layer: str) -> Layout | None:
        for pattern, layout in self.rules:
            if fnmatch.fnmatchcase(layer, pattern):
                return layout
        return None

    def to_text(self) -> str:
        parts = [f"{p}={layout}" for p, layout in self.rules]
        if self.fallback is not None:
            parts.append(str(self.fallback))
        return ",".join(parts)


def parse_overrides(spec: str | Mapping[str, str] | None) -> LayoutOverrides:
    """``"blocks.*=tokens:1,head=vector,channels_first"`` or a mapping (run files).

    A bare layout (or the key ``*default*`` of a mapping) is the fallback for outputs the
    source cannot tell; ``PATTERN=LAYOUT`` declares the layers that match a glob pattern.

    Raises:
        ConfigError: A malformed entry or an unknown layout.
    """
    if spec is None or spec == "":
        return LayoutOverrides()
    if isinstance(spec, Mapping):
        items = [(str(k), str(v)) for k, v in spec.items()]
    else:
        items = [
            (pattern, value) if value is not None else ("*default*", pattern)
            for pattern, value in comma_entries(str(spec))
        ]
    rules: list[tuple[str, Layout]] = []
    fallback: Layout | None = None
    for pattern, value in items:
        if not pattern:
            raise ConfigError(f"--layout entry '={value}' needs a layer (or pattern) before '='")
        layout = parse_layout(value)
        if pattern == "*default*":
            if fallback is not None:
                raise ConfigError("--layout names more than one fallback layout")
            fallback = layout
        else:
            rules.append((pattern, layout))
    return LayoutOverrides(tuple(rules), fallback)


def comma_entries(text: str) -> list[tuple[str, str | None]]:
    """The entries of a comma-separated option: ``a=1, b`` -> ``[("a", "1"), ("b", None)]``
    (each side stripped; an entry without ``=`` has the value None; empty entries are
    skipped)."""
    out: list[tuple[str, str | None]] = []
    for part in text.split(","):
        part = part.strip()
        if part:
            key, eq, value = part.partition("=")
            out.append((key.strip(), value.strip()) if eq else (part, None))
    return out


def token_prefix(tokens: int, num_patches: int | None) -> int | None:
    """Leading non-patch tokens of a sequence of ``tokens``, or None when it does not fit."""
    if num_patches is None or num_patches <= 0:
        return None
    extra = tokens - num_patches
    return extra if 0 <= extra <= MAX_PREFIX_TOKENS else None


def spatial_candidates(shape: tuple[int, ...]) -> list[Layout]:
    """4-D layouts consistent with a probe output of square images (equal spatial axes)."""
    out = []
    if shape[2] == shape[3]:
        out.append(CHANNELS_FIRST)
    if shape[1] == shape[2]:
        out.append(CHANNELS_LAST)
    return out


def infer_layout(
    shape: tuple[int, ...], *, prefer_4d: Layout | None, num_patches: int | None
) -> Layout | None:
    """A source's rule for one probe output (batch :data:`PROBE_BATCH` of square images).

    Args:
        shape: The output's shape, batch axis included.
        prefer_4d: What the source declares for 4-D outputs when both spatial layouts fit
            the shape; None when the source cannot tell.
        num_patches: Patch tokens of the model's input (None: not a token model).

    Returns:
        The layout, or None when it cannot be told (the caller asks for ``--layout``).
    """
    b = PROBE_BATCH
    if len(shape) == 2 and shape[0] == b:
        return VECTOR
    if len(shape) == 4 and shape[0] == b:
        fits = spatial_candidates(shape)
        if len(fits) == 1:
            return fits[0]
        return prefer_4d if prefer_4d in fits else None
    if len(shape) == 3:
        if shape[0] == b and shape[1] != b:
            prefix = token_prefix(shape[1], num_patches)
            return None if prefix is None else Layout("tokens", prefix)
        if shape[1] == b and shape[0] != b:
            prefix = token_prefix(shape[0], num_patches)
            return None if prefix is None else Layout("sequence_first", prefix)
    return None


def patch_count(patch: Any, crop: int) -> int | None:
    """Patch tokens of a ``crop`` x ``crop`` input cut into ``patch`` (an int or a pair), or
    None when the model has no patch size."""
    if patch is None:
        return None
    p = tuple(patch) if isinstance(patch, tuple | list) else (int(patch), int(patch))
    return (crop // p[0]) * (crop // p[1])


def shape_rule(prefer_4d: Layout | None, num_patches: int | None) -> LayoutRule:
    """The rule that infers every layer's layout from its shape alone (see infer_layout)."""

    def rule(_layer: str, shape: tuple[int, ...]) -> Layout | None:
        return infer_layout(shape, prefer_4d=prefer_4d, num_patches=num_patches)

    return rule


def check_layout(layout: Layout, shape: tuple[int, ...], where: str) -> None:
    """Refuse a declared layout that the probe output's shape contradicts.

    Raises:
        ConfigError: Wrong rank, batch axis, spatial axes or token count; names the layer.
    """
    b = PROBE_BATCH
    shown = "x".join(str(s) for s in shape)
    fix = f"declare its layout with --layout '{where.split('/', 1)[-1]}=LAYOUT' ({CHOICES})"

    def refuse(why: str) -> None:
        raise ConfigError(f"{where}: output {shown} (batch of {b}) {why}; {fix}")

    ranks = {"channels_last": (4,), "tokens": (3,), "sequence_first": (3,), "vector": (2,)}
    if layout.kind in ranks and len(shape) not in ranks[layout.kind]:
        refuse(f"is {len(shape)}-D, not a {layout} output")
    if layout.kind == "channels_first" and len(shape) < 3:
        refuse("has no spatial axes for channels_first")
    if len(shape) > 0 and shape[layout.batch_axis] != b:
        refuse(f"has no batch axis at position {layout.batch_axis} for {layout}")
    if layout.kind == "channels_first" and len(shape) == 4 and shape[2] != shape[3]:
        refuse("has unequal axes 2 and 3, so they are not the spatial axes of a square image")
    if layout.kind == "channels_last" and shape[1] != shape[2]:
        refuse("has unequal axes 1 and 2, so they are not the spatial axes of a square image")
    if layout.kind in ("tokens", "sequence_first"):
        n_tokens = shape[1 - layout.batch_axis]
        if layout.prefix >= n_tokens:
            refuse(f"has {n_tokens} tokens, not more than the {layout.prefix} prefix tokens")


LayoutRule = Callable[[str, tuple[int, ...]], Layout | None]


def resolve_layouts(
    model: str,
    shapes: Mapping[str, tuple[int, ...]],
    rule: LayoutRule,
    overrides: LayoutOverrides | None = None,
) -> dict[str, Layout]:
    """The checked layout of every probed output.

    Args:
        model: Registry model name (for messages).
        shapes: Layer -> output shape of the probe forward (batch axis included).
        rule: The source's rule (None where it cannot tell).
        overrides: What the user declared.

    Raises:
        ConfigError: An output whose layout is ambiguous, or a declared layout its shape
            contradicts; the message names the layer and the ``--layout`` fix.
    """
    overrides = overrides or LayoutOverrides()
    out: dict[str, Layout] = {}
    for layer, shape in shapes.items():
        where = f"{model}/{layer}"
        layout = overrides.find(layer) or rule(layer, shape) or overrides.fallback
        if layout is None:
            shown = "x".join(str(s) for s in shape)
            raise ConfigError(
                f"the layout of {where}'s output ({shown}, batch of {PROBE_BATCH}) is "
                f"ambiguous: declare it with --layout '{layer}=LAYOUT' ({CHOICES}; e.g. "
                f"tokens:1 for batch x tokens x dim with one class token), or probe another "
                "module"
            )
        check_layout(layout, shape, where)
        out[layer] = layout
    return out
