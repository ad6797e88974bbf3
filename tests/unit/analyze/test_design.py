"""The design of image-level items: which relabellings and resamples each scheme draws."""

from __future__ import annotations

import math

import numpy as np
import pytest

from semwh.analyze.design import (
    Design,
    current,
    draw_permutation,
    draw_rows,
    exchangeable,
    group_codes,
    image_design,
    resample_units,
)
from semwh.analyze.permutation import permutation_stream
from semwh.errors import ConfigError
from tests.unit.analyze import reference

#: Images of eight concepts, interleaved: sizes 3, 2, 3, 1, 2, 4, 2, 3. Concepts d (the only
#: one of 1 image) and f (the only one of 4) have a size no other concept has.
SIZES = {"a": 3, "b": 2, "c": 3, "d": 1, "e": 2, "f": 4, "g": 2, "h": 3}
CONCEPTS = list(
    np.random.default_rng(0).permutation([c for c, size in SIZES.items() for _ in range(size)])
)
N = len(CONCEPTS)


def design(permute: str, resample: str = "concepts") -> Design:
    return Design(N, group_codes(CONCEPTS), permute, resample)


def blocks() -> dict[str, list[int]]:
    """Each concept's item positions, in item order."""
    return {c: [i for i in range(N) if CONCEPTS[i] == c] for c in SIZES}


def test_concepts_scheme_moves_whole_concepts_among_equal_sizes() -> None:
    images = blocks()
    by_positions = {tuple(block): c for c, block in images.items()}
    sources: dict[str, set[str]] = {c: set() for c in SIZES}
    rng = np.random.default_rng(1)
    for _ in range(100):
        perm = design("concepts").permutation(rng)
        assert sorted(perm.tolist()) == list(range(N))
        for c, block in images.items():
            # The images of c take, in order, the places of all the images of one concept.
            source = by_positions[tuple(perm[block].tolist())]
            assert SIZES[source] == SIZES[c]
            sources[c].add(source)
    # A concept whose number of images no other concept has stays; the others visit every
    # concept of their size.
    assert sources["d"] == {"d"} and sources["f"] == {"f"}
    for c in "bcegah":
        assert sources[c] == {o for o in SIZES if SIZES[o] == SIZES[c]}


def test_within_concept_scheme_keeps_every_image_in_its_concept() -> None:
    images = blocks()
    arrangements: dict[str, set[tuple[int, ...]]] = {c: set() for c in SIZES}
    rng = np.random.default_rng(2)
    for _ in range(100):
        perm = design("within-concept").permutation(rng)
        for c, block in images.items():
            assert sorted(perm[block].tolist()) == block
            arrangements[c].add(tuple(perm[block].tolist()))
    # Every arrangement of a concept of up to three images shows up; more than one of four.
    for c, size in SIZES.items():
        expected = math.factorial(size) if size < 4 else len(arrangements[c])
        assert len(arrangements[c]) == expected
        assert len(arrangements[c]) > 1 or size == 1


@pytest.mark.parametrize("scheme", ["concepts", "images", "within-concept"])
def test_each_scheme_draws_as_documented(scheme: str) -> None:
    """The stream, by blocks and batches, is the documented draws from the seed's Generator."""
    rng = np.random.default_rng(3)
    expected = [reference.scheme_permutation(rng, CONCEPTS, scheme) for _ in range(23)]
    with exchangeable(design(scheme)):
        for start, stop, batch in [(0, 23, 5), (7, 19, 4), (22, 23, 1)]:
            got = np.concatenate(
                list(permutation_stream(np.random.default_rng(3), N, start, stop, batch))
            )
            np.testing.assert_array_equal(got, expected[start:stop])


def test_images_scheme_is_the_free_stream() -> None:
    rng = np.random.default_rng(4)
    with exchangeable(design("images")):
        got = [draw_permutation(rng, N) for _ in range(20)]
    free = np.random.default_rng(4)
    np.testing.assert_array_equal(got, [free.permutation(N) for _ in range(20)])


def test_concept_level_streams_are_unchanged() -> None:
    """Without a design: one rng.permutation(n) per permutation, one rng.integers(0, n, n)
    per resample, bit for bit; and a design set for a block is gone after it."""
    with pytest.raises(RuntimeError), exchangeable(design("concepts")):
        raise RuntimeError
    assert current() is None
    for scheme in (None, design("within-concept")):
        with exchangeable(scheme):
            pass
        got = np.concatenate(list(permutation_stream(np.random.default_rng(5), 9, 0, 17, 4)))
        np.testing.assert_array_equal(got, reference.permutations(5, 9, 17))
        rng, free = np.random.default_rng(6), np.random.default_rng(6)
        for _ in range(10):
            np.testing.assert_array_equal(draw_rows(rng, 9), free.integers(0, 9, size=9))


def test_concept_resamples_draw_whole_concepts() -> None:
    images = blocks()
    starts = {block[0]: block for block in images.values()}
    rng, again = np.random.default_rng(7), np.random.default_rng(7)
    lengths = set()
    with exchangeable(design("concepts", "concepts")):
        for _ in range(50):
            rows = draw_rows(rng, N)
            np.testing.assert_array_equal(rows, reference.scheme_rows(again, CONCEPTS, "concepts"))
            # A concatenation of len(SIZES) whole concepts, each with all its images in order.
            place, drawn = 0, 0
            while place < rows.size:
                block = starts[int(rows[place])]
                assert rows[place : place + len(block)].tolist() == block
                place, drawn = place + len(block), drawn + 1
            assert drawn == len(SIZES)
            lengths.add(rows.size)
    assert len(lengths) > 1  # unequal sizes: a resample need not hold N images


def test_image_resamples_are_the_free_stream() -> None:
    rng, free = np.random.default_rng(8), np.random.default_rng(8)
    with exchangeable(design("concepts", "images")):
        for _ in range(10):
            np.testing.assert_array_equal(draw_rows(rng, N), free.integers(0, N, size=N))


def test_a_design_of_another_number_of_items_is_refused() -> None:
    rng = np.random.default_rng(9)
    for scheme, unit in [
        ("concepts", "concepts"),
        ("images", "concepts"),
        ("within-concept", "images"),
    ]:
        with exchangeable(design(scheme, unit)):
            with pytest.raises(
                ConfigError, match=f"relabellings of {N + 1} items inside a design of {N}"
            ):
                draw_permutation(rng, N + 1)
            with pytest.raises(ConfigError, match=f"design of {N} items"):
                draw_rows(rng, N - 1)


def test_image_design_defaults_and_counts() -> None:
    made, permute, resample = image_design(CONCEPTS, None, None)
    assert (permute, resample) == ("concepts", "concepts") and made.n == N
    assert image_design(["x", "y", "z", "w"], None, None)[1:] == ("images", "images")
    assert image_design(CONCEPTS, "within-concept", "images")[1:] == ("within-concept", "images")
    with pytest.raises(ConfigError, match="unknown permutation scheme 'concept'"):
        image_design(CONCEPTS, "concept", None)
    assert design("concepts").n_distinct() == 3 * 2 * 3 * 2  # 3! sizes two, 3! sizes three
    assert design("concepts").fixed_concepts() == 2
    assert design("within-concept").n_distinct() == 6 * 2 * 6 * 1 * 2 * 24 * 2 * 6
    assert design("within-concept").fixed_concepts() == 1
    assert design("images").n_distinct() == math.factorial(N)


def test_resample_units_are_the_concepts_when_concepts_are_drawn() -> None:
    with exchangeable(design("concepts", "concepts")):
        assert resample_units(N) == len(SIZES)
    with exchangeable(design("concepts", "images")):
        assert resample_units(N) == N
    assert resample_units(N) == N
