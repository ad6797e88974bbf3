"""Which relabellings and resamples a test may draw: the design of the items it compares.

At the concept level the items are concepts, exchangeable one by one: a permutation is one
``rng.permutation(n)`` call and a bootstrap resample one ``rng.integers(0, n, size=n)`` call
(the streams of :mod:`semwh.analyze.permutation`, unchanged). At the image level the items
are stimuli, grouped by their concept, and the null must match the design:

``concepts``
    Whole concepts exchange: the images of one concept take, in order, the places of the
    images of another. Only concepts with the same number of images can exchange without
    breaking their images apart (whole-block exchangeability, as in FSL's PALM); concepts
    are grouped by their number of images and permuted within each group (one
    ``rng.permutation`` call per group size, smallest first). A concept whose number of
    images no other concept has stays in place.
``images``
    Every image is exchangeable with every other: one ``rng.permutation(n)`` call.
``within-concept``
    Images exchange only within their concept (one ``rng.permutation`` call per concept of
    two or more images, in item order): the null of "no exemplar information beyond the
    category".

A bootstrap resample draws concepts with replacement and takes all their images
(``concepts``: one ``rng.integers(0, k, size=k)`` call over the k concepts), or draws images
(``images``: as the concept level). A resample of whole concepts holds as many images as
its concepts have, which need not be n, and its sample size is k (:func:`resample_units`).

The design of a comparison is set around its computation with :func:`exchangeable`; the
permutation and resample streams (:func:`draw_permutation`, :func:`draw_rows`) read it, so
every measure, built in or from another package, and every path (single, sweep, grid, peak,
Ray) draws the same relabellings from the same seed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from semwh.errors import ConfigError

#: Items of a comparison: concepts (concept means) or stimuli (images).
LEVELS = ("concept", "image")
#: Permutation schemes at the image level.
PERMUTE_SCHEMES = ("concepts", "images", "within-concept")
#: Bootstrap units at the image level.
RESAMPLE_UNITS = ("concepts", "images")
#: What a concept-level result records as its permutation scheme and bootstrap unit.
CONCEPT_LEVEL = "concepts"


def check_level(level: str) -> str:
    if level not in LEVELS:
        raise ConfigError(f"unknown level {level!r} (choose {', '.join(LEVELS)})")
    return level


def check_permute(permute: str | None) -> str | None:
    if permute is not None and permute not in PERMUTE_SCHEMES:
        raise ConfigError(
            f"unknown permutation scheme {permute!r} (choose {', '.join(PERMUTE_SCHEMES)})"
        )
    return permute


def check_resample(unit: str | None) -> str | None:
    if unit is not None and unit not in RESAMPLE_UNITS:
        raise ConfigError(f"unknown bootstrap unit {unit!r} (choose {', '.join(RESAMPLE_UNITS)})")
    return unit


@dataclass(frozen=True)
class Design:
    """How the n items of a comparison may be relabelled and resampled.

    Attributes:
        n: Number of items.
        groups: Each item's concept as an integer code (codes in order of first
            appearance); None at the concept level (every item its own concept).
        permute: ``concepts``, ``images`` or ``within-concept`` (see the module).
        resample: ``concepts`` or ``images``.
    """

    n: int
    groups: np.ndarray | None = field(default=None, repr=False)
    permute: str = CONCEPT_LEVEL
    resample: str = CONCEPT_LEVEL

    @property
    def free(self) -> bool:
        """Whether permutations are the plain ``rng.permutation(n)`` stream."""
        return self.groups is None or self.permute == "images"

    @property
    def free_resample(self) -> bool:
        return self.groups is None or self.resample == "images"

    def members(self) -> list[np.ndarray]:
        """Each concept's item positions, concepts in code order (computed once: every
        permutation and resample of the design reads them)."""
        return self._members

    def size_classes(self) -> list[list[int]]:
        """Concept codes grouped by their number of images (smallest size first)."""
        return self._size_classes

    @cached_property
    def _members(self) -> list[np.ndarray]:
        assert self.groups is not None
        order = np.argsort(self.groups, kind="stable")
        counts = np.bincount(self.groups)
        return np.split(order, np.cumsum(counts)[:-1])

    @cached_property
    def _size_classes(self) -> list[list[int]]:
        sizes = np.bincount(self.groups) if self.groups is not None else np.ones(self.n, int)
        return [list(np.flatnonzero(sizes == s)) for s in sorted(set(sizes.tolist()))]

    @cached_property
    def _blocks(self) -> list[np.ndarray]:
        """Per size class (smallest first), a concepts x images matrix of item positions:
        exchanging whole concepts of a class is one fancy-indexed assignment."""
        members = self._members
        return [np.stack([members[g] for g in group]) for group in self._size_classes]

    def n_distinct(self) -> float:
        """How many distinct relabellings the scheme has (may be astronomically many)."""
        if self.free:
            return math.factorial(min(self.n, 170))
        if self.permute == "concepts":
            return math.prod(math.factorial(min(len(c), 170)) for c in self.size_classes())
        return math.prod(math.factorial(min(len(m), 170)) for m in self.members())

    def fixed_concepts(self) -> int:
        """Concepts that no permutation of the scheme moves."""
        if self.free:
            return 0
        if self.permute == "concepts":
            return sum(1 for c in self.size_classes() if len(c) == 1)
        return sum(1 for m in self.members() if len(m) == 1)

    def permutation(self, rng: np.random.Generator) -> np.ndarray:
        """One relabelling: item ``i`` takes the values of item ``perm[i]``."""
        if self.free:
            return rng.permutation(self.n)
        perm = np.arange(self.n)
        if self.permute == "concepts":
            # The concepts of each class take, in order, the places of the drawn ones.
            for block in self._blocks:
                perm[block] = block[rng.permutation(len(block))]
            return perm
        for positions in self._members:
            if positions.size > 1:
                perm[positions] = positions[rng.permutation(positions.size)]
        return perm

    def rows(self, rng: np.random.Generator) -> np.ndarray:
        """One bootstrap resample: item positions drawn with replacement."""
        if self.free_resample:
            return np.asarray(rng.integers(0, self.n, size=self.n))
        members = self.members()
        drawn = rng.integers(0, len(members), size=len(members))
        return np.concatenate([members[g] for g in drawn])


_CURRENT: ContextVar[Design | None] = ContextVar("semwh_design", default=None)


@contextmanager
def exchangeable(design: Design | None) -> Iterator[None]:
    """Draw permutations and resamples by ``design`` inside the block (None: items free)."""
    token = _CURRENT.set(design)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current() -> Design | None:
    return _CURRENT.get()


def _design_for(n: int) -> Design | None:
    design = _CURRENT.get()
    if design is None:
        return None
    if design.n != n:
        if design.free and design.free_resample:
            return None
        raise ConfigError(
            f"a test drew relabellings of {n} items inside a design of {design.n} items: "
            "its permutations would ignore the design"
        )
    return design


def draw_permutation(rng: np.random.Generator, n: int) -> np.ndarray:
    """One permutation of ``n`` items by the current design (free without one)."""
    design = _design_for(n)
    return rng.permutation(n) if design is None else design.permutation(rng)


def draw_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """One bootstrap resample of ``n`` items by the current design (free without one)."""
    design = _design_for(n)
    if design is None:
        return np.asarray(rng.integers(0, n, size=n))
    return design.rows(rng)


def resample_units(n: int) -> int:
    """How many units a resample of ``n`` items draws by the current design: the concepts
    when it resamples whole concepts, else ``n`` (what a variance over resamples counts as
    its sample size)."""
    design = _design_for(n)
    if design is None or design.free_resample:
        return n
    assert design.groups is not None
    return int(np.bincount(design.groups).size)


def group_codes(concepts: Sequence[str]) -> np.ndarray:
    """Integer codes of each item's concept, in order of first appearance."""
    codes: dict[str, int] = {}
    return np.array([codes.setdefault(c, len(codes)) for c in concepts], dtype=np.int64)


def image_design(
    concepts: Sequence[str], permute: str | None, resample: str | None
) -> tuple[Design, str, str]:
    """The design of image-level items of ``concepts`` (one per item), with the scheme and
    bootstrap unit resolved: ``concepts`` when any concept has two or more images, else
    ``images`` (the two are then the same)."""
    groups = group_codes(concepts)
    repeated = bool(np.bincount(groups).max(initial=0) > 1) if groups.size else False
    default = "concepts" if repeated else "images"
    permute = check_permute(permute) or default
    resample = check_resample(resample) or default
    return Design(len(concepts), groups, permute, resample), permute, resample
