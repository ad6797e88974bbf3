"""Concept ids (NFC, trimmed, no '/' or control characters) and the one rule for input keys."""

from __future__ import annotations

import time
import unicodedata

import pytest

from semwh.errors import InputError
from semwh.ingest.keys import (
    MAX_SHOWN,
    ConceptKeys,
    default_name,
    normalise_concept_id,
    normalise_concept_name,
)

PLACE = "things.tsv line 12"


def test_ids_are_stored_as_given_once_nfc_and_trimmed():
    decomposed = unicodedata.normalize("NFD", "café_crème")
    assert decomposed != "café_crème"
    assert normalise_concept_id(decomposed, PLACE) == "café_crème"
    assert normalise_concept_id("  Bean_Bag \t", PLACE) == "Bean_Bag"
    assert normalise_concept_id("ice cream  cone", PLACE) == "ice cream  cone"
    assert normalise_concept_id("n02084071", PLACE) == "n02084071"
    # A no-break space is a character like any other, not a control character.
    assert normalise_concept_id("a\u00a0b", PLACE) == "a\u00a0b"
    assert normalise_concept_id("Straße", PLACE) == "Straße"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (12, "concept id 12 is not text"),
        (None, "concept id None is not text"),
        ("", "empty concept id"),
        (" \t ", "empty concept id"),
        ("bike/helmet", "contains '/'"),
        ("bike\thelmet", "U+0009"),
        ("bean\x7fbag", "U+007F"),
        ("bean\u200dbag", "U+200D ZERO WIDTH JOINER"),
        ("bean\u2028bag", "U+2028 LINE SEPARATOR"),
        ("bean\u2029bag", "U+2029 PARAGRAPH SEPARATOR"),
        ("\ufeffbean", "U+FEFF"),
    ],
)
def test_malformed_ids_are_refused_with_their_place(raw, expected):
    with pytest.raises(InputError) as err:
        normalise_concept_id(raw, PLACE)
    assert str(err.value).startswith(PLACE + ": ") and expected in str(err.value)


def test_names_may_hold_a_slash_but_no_control_character():
    assert normalise_concept_name(" AC/DC ", PLACE) == "AC/DC"
    with pytest.raises(InputError, match=r"things.tsv line 12: concept name .* U\+000A"):
        normalise_concept_name("two\nlines", PLACE)
    assert default_name("bean_bag") == "bean bag"
    assert default_name("_") == "_"


THINGS = [
    ("aardvark", "aardvark", "n02503517"),
    ("bean_bag", "bean bag", None),
    ("ice_cream", "ice cream", "n07614500"),
    ("bike_helmet", "bike helmet", None),
    ("bat1", "bat", "n02139199"),
    ("bat2", "bat", "n02799071"),
    ("dog", "dog", "n02084071"),
    ("n01503061", "bird", None),
]


@pytest.fixture
def keys() -> ConceptKeys:
    return ConceptKeys(THINGS)


def test_a_key_is_an_id_then_a_unique_name_then_a_unique_wnid(keys):
    got = keys.match(["bean_bag", "ice cream", "n02084071", "n01503061", " aardvark "], "f")
    assert got.ids == ("bean_bag", "ice_cream", "dog", "n01503061", "aardvark")
    assert got.by == ("id", "name", "wnid", "id", "id")
    assert got.unknown == ()
    assert keys.resolve(["bean bag", "bat1"], "f") == ["bean_bag", "bat1"]
    # The id wins over another concept's name.
    both = ConceptKeys([("cat", "feline"), ("kitty", "cat")])
    assert both.resolve(["cat", "feline"], "f") == ["cat", "cat"]
    # Names and ids match exactly: case and underscores count.
    assert keys.match(["Bean_bag", "bean  bag"], "f").ids == (None, None)
    assert len(keys) == len(THINGS) and keys.ids[:2] == ["aardvark", "bean_bag"]
    assert "bean_bag" in keys and "bean bag" not in keys and keys.name_of("bat2") == "bat"
    with pytest.raises(ValueError, match="concept id 'dog' given twice"):
        ConceptKeys([("dog", "dog"), ("dog", "hound")])


def test_a_name_of_several_concepts_is_an_error_naming_them(keys):
    with pytest.raises(InputError) as err:
        keys.resolve([("dog", "m.csv line 2"), ("bat", "m.csv line 3")], "mapping m.csv")
    message = str(err.value)
    assert message.startswith("mapping m.csv: 'bat' at m.csv line 3 is the name of 2 concepts")
    assert "('bat1', 'bat2')" in message and "use the concept id" in message
    shared = ConceptKeys([("a", "a", "n00000001"), ("b", "b", "n00000001")])
    with pytest.raises(InputError, match=r"'n00000001' is the WordNet id of 2 concepts"):
        shared.resolve(["n00000001"], "f")
    # Being the id of one concept settles it.
    assert ConceptKeys([("bat", "bat"), ("bat2", "bat")]).resolve(["bat"], "f") == ["bat"]


def test_unknown_keys_are_reported_together_with_their_nearest_ids(keys):
    rows = [
        ("aardvark", "rdm.csv line 2"),
        ("aardvak", "rdm.csv line 3"),
        ("Bean Bag", "rdm.csv line 4"),
        ("icecream", "rdm.csv line 5"),
        ("zzzzzz", "rdm.csv line 6"),
        ("aardvak", "rdm.csv line 7"),
    ]
    with pytest.raises(InputError) as err:
        keys.resolve(rows, "RDM file rdm.csv")
    message = str(err.value)
    assert message.startswith("RDM file rdm.csv: 4 unknown concept keys")
    assert "'aardvak' at rdm.csv line 3 (2 times) (nearest: 'aardvark')" in message
    assert "'Bean Bag' at rdm.csv line 4 (nearest: 'bean_bag')" in message
    assert "'icecream' at rdm.csv line 5 (nearest: 'ice_cream')" in message
    assert "'zzzzzz' at rdm.csv line 6." in message  # nothing near
    assert "run `semwh ingest concepts` first" in message
    assert "\n" not in message


def test_match_keeps_going_and_lists_only_the_first_keys(keys):
    unknown = [f"thing{i:02d}" for i in range(MAX_SHOWN + 3)]
    got = keys.match(["dog", *unknown, "bird"], "mapping")
    assert got.ids == ("dog", *[None] * len(unknown), "n01503061")
    assert got.resolved_ids == ["dog", "n01503061"]
    assert got.found == {"dog": "dog", "bird": "n01503061"}
    assert [u.key for u in got.unknown] == unknown and got.unknown[0].place is None
    message = got.unknown_message()
    assert message.startswith("mapping: 13 unknown concept keys")
    assert "'thing09'" in message and "'thing10'" not in message and "and 3 more" in message
    with pytest.raises(InputError, match="13 unknown concept keys"):
        got.raise_unknown()
    assert keys.match(["dog"], "f").unknown_message() is None


def test_malformed_keys_name_their_place(keys):
    with pytest.raises(InputError, match=r"^s.csv line 4: empty concept key"):
        keys.match([("dog", "s.csv line 3"), ("  ", "s.csv line 4")], "space s.csv")
    with pytest.raises(InputError, match=r"^space s.csv: concept key 7 is not text"):
        keys.match(["dog", 7], "space s.csv")


def test_check_unique_names_both_places(keys):
    got = keys.match([("dog", "s.csv line 2"), ("n02084071", "s.csv line 5")], "space s.csv")
    with pytest.raises(InputError) as err:
        got.check_unique()
    assert str(err.value) == (
        "s.csv line 5: 'n02084071' (first as 'dog') gives concept 'dog' again "
        "(first at s.csv line 2); each concept may appear once"
    )
    # Without places, the input's description and the keys' positions say where.
    got = keys.match(["dog", "n02084071"], "space s.csv")
    with pytest.raises(InputError, match=r"^space s.csv: key 2: 'n02084071' \(first as 'dog'\)"):
        got.check_unique()
    keys.match(["dog", "bat1", "nothing"], "f").check_unique()


def test_many_keys_are_quick_and_only_listed_keys_get_nearest_ids():
    keys = ConceptKeys((f"concept_{i}", f"concept {i}") for i in range(10_000))
    wanted = [f"concept_{i % 10_000}" for i in range(50_000)]
    wanted += [f"concept {i % 10_000}" for i in range(50_000)]
    start = time.perf_counter()
    assert keys.resolve(wanted, "f")[:2] == ["concept_0", "concept_1"]
    assert time.perf_counter() - start < 2.0
    # Beyond the full-search size, near ids are still found among the neighbouring strings.
    unknown = ["Concept_77", "oncept_5123"] + [f"concept_{i}x" for i in range(30)]
    got = keys.match(unknown, "f")
    assert got.unknown[0].nearest[0] == "concept_77"  # the same up to case
    assert got.unknown[1].nearest[0] == "concept_5123"  # the first letter lost
    assert [u.nearest[0] for u in got.unknown[2:6]] == [f"concept_{i}" for i in range(4)]
    assert all(u.nearest == () for u in got.unknown[MAX_SHOWN:])
    assert time.perf_counter() - start < 4.0
