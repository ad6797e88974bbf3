"""Concept ids and the one rule that turns an input's keys into them.

A concept is identified by the lab's own id: any non-empty text, Unicode NFC, trimmed, without
``/`` or control characters, stored exactly as given (WordNet ids are ids like any other).
Every input keyed by concept (word mappings, external spaces, RDM files, run files) goes
through :class:`ConceptKeys`: a key is the id of a concept, or else the exact display name of
exactly one concept, or else the WordNet id of exactly one concept. Keys that match nothing
are gathered and reported together, each with the ids nearest to it. No database here: the
caller builds :class:`ConceptKeys` from the registry (or from a concept file).
"""

from __future__ import annotations

import bisect
import difflib
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from semwh.errors import InputError

# Control characters (Cc), format characters such as zero-width joiners and the byte-order
# mark (Cf), and the line and paragraph separators (Zl, Zp).
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
# How many unknown or ambiguous keys a message lists (with their nearest ids).
MAX_SHOWN = 10
# How many nearest ids each listed unknown key gets.
MAX_NEAREST = 3
# Above this many ids and names, the search for near ones compares the key only with the
# _WINDOW strings on either side of it (and of it less up to 3 last characters) in
# alphabetical order of their start, and of their end for typos early in a word, so a
# message stays quick whatever the registry's size.
_FULL_SEARCH = 5_000
_WINDOW = 100
INGEST_HINT = "run `semwh ingest concepts` first"

# Which field of a concept a key matched, in the order they are tried.
BY_ID = "id"
BY_NAME = "name"
BY_WNID = "wnid"


def _refused_character(text: str) -> str | None:
    """The first control, format or line-separator character of ``text``, or None."""
    if text.isprintable():  # every refused category is non-printable; the common case
        return None
    for char in text:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            return char
    return None


def _describe_char(char: str) -> str:
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" {name}" if name else "")


#: The key column of a file keyed by concept, in the order looked for (``wnid``: its older
#: name): space files, RDM files, word mappings and image manifests.
KEY_COLUMNS = ("concept", "wnid")


def key_column(columns: Iterable[str]) -> str | None:
    """The key column among ``columns`` (``concept``, else ``wnid``), or None."""
    present = set(columns)
    return next((k for k in KEY_COLUMNS if k in present), None)


def normalise(text: str) -> str:
    """``text`` as ids and keys are compared: Unicode NFC, surrounding white space removed."""
    return unicodedata.normalize("NFC", text).strip()


def _normalise_text(raw: object, place: str, what: str) -> str:
    if not isinstance(raw, str):
        raise InputError(f"{place}: {what} {raw!r} is not text")
    text = normalise(raw)
    if not text:
        raise InputError(f"{place}: empty {what}")
    return text


def id_problem(text: str) -> str | None:
    """Why a normalised text cannot be an id (a concept's or a stimulus's); None: it can."""
    if not text:
        return "empty"
    if "/" in text:
        return "holds '/'"
    bad = _refused_character(text)
    if bad is not None:
        return f"holds the control character {_describe_char(bad)}"
    return None


def normalise_concept_id(raw: object, place: str) -> str:
    """A concept id as stored: Unicode NFC, surrounding white space removed.

    Case, inner spaces and underscores are kept as given.

    Args:
        raw: The id as read.
        place: Where it was read, for messages (e.g. ``"things.tsv line 12"``).

    Raises:
        InputError: Not text, empty once trimmed, holding ``/`` or a control character
            (categories Cc, Cf, Zl, Zp; the message names the character as U+XXXX).
    """
    text = _normalise_text(raw, place, "concept id")
    if "/" in text:
        raise InputError(
            f"{place}: concept id {text!r} contains '/', which a concept id cannot hold "
            "(it separates the parts of space names and paths)"
        )
    bad = _refused_character(text)
    if bad is not None:
        raise InputError(
            f"{place}: concept id {text!r} contains the control character {_describe_char(bad)}"
        )
    return text


def normalise_concept_name(raw: object, place: str) -> str:
    """A display name as stored: NFC, trimmed, without control characters (``/`` allowed).

    Raises:
        InputError: Not text, empty once trimmed, or holding a control character.
    """
    text = _normalise_text(raw, place, "concept name")
    bad = _refused_character(text)
    if bad is not None:
        raise InputError(
            f"{place}: concept name {text!r} contains the control character {_describe_char(bad)}"
        )
    return text


def default_name(concept: str) -> str:
    """The display name of a concept without one: its id with ``_`` read as a space."""
    return concept.replace("_", " ").strip() or concept


def _fold(text: str) -> str:
    """A loose form for hints only: case folded, ``_`` and ``-`` read as spaces."""
    return " ".join(text.casefold().replace("_", " ").replace("-", " ").split())


@dataclass(frozen=True)
class UnknownKey:
    """A key that names no concept.

    Attributes:
        key: The key, NFC and trimmed.
        place: Where it first appeared (None when the caller gave no place).
        count: How many times it appeared.
        nearest: Up to three ids of concepts whose id or name is close (filled for the first
            keys a message lists only).
    """

    key: str
    place: str | None
    count: int
    nearest: tuple[str, ...]


@dataclass(frozen=True)
class KeyMatch:
    """What :meth:`ConceptKeys.match` found for each key, in input order.

    Attributes:
        what: The input's description, the start of every message.
        keys: The keys, NFC and trimmed.
        places: Where each key came from (None where not given).
        ids: The concept id of each key, None where it matched nothing.
        by: Which field each key matched (``"id"``, ``"name"``, ``"wnid"``), None if nothing.
        unknown: The distinct keys that matched nothing, in order of first appearance.
    """

    what: str
    keys: tuple[str, ...]
    places: tuple[str | None, ...]
    ids: tuple[str | None, ...]
    by: tuple[str | None, ...]
    unknown: tuple[UnknownKey, ...]

    @property
    def found(self) -> dict[str, str]:
        """Each key that matched -> its concept id."""
        return {k: c for k, c in zip(self.keys, self.ids, strict=True) if c is not None}

    @property
    def resolved_ids(self) -> list[str]:
        """The concept ids of the keys that matched, in input order."""
        return [c for c in self.ids if c is not None]

    def unknown_message(self) -> str | None:
        """One line listing the unknown keys with their nearest ids (None when all matched)."""
        if not self.unknown:
            return None
        return unknown_message(self.what, self.unknown)

    def raise_unknown(self) -> None:
        """Raise the :class:`InputError` of :meth:`unknown_message` if any key is unknown."""
        message = self.unknown_message()
        if message is not None:
            raise InputError(message)

    def check_unique(self) -> None:
        """Refuse two keys that give the same concept (``dog`` and its name, twice ``dog``).

        Raises:
            InputError: Names the concept and where both keys were.
        """
        first: dict[str, int] = {}
        for i, concept in enumerate(self.ids):
            if concept is None:
                continue
            j = first.setdefault(concept, i)
            if j != i:
                again = self.places[i] or f"key {i + 1}"
                before = self.places[j] or f"key {j + 1}"
                keys = (
                    f"{self.keys[i]!r}"
                    if self.keys[i] == self.keys[j]
                    else f"{self.keys[i]!r} (first as {self.keys[j]!r})"
                )
                # A place names the file already ("rdm.csv line 4"); a bare key count does not.
                where = again if self.places[i] else f"{self.what}: {again}"
                raise InputError(
                    f"{where}: {keys} gives concept {concept!r} again (first at {before}); "
                    "each concept may appear once"
                )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def unknown_message(what: str, unknown: tuple[UnknownKey, ...] | list[UnknownKey]) -> str:
    """The one-line message for keys that name no concept (see :class:`KeyMatch`)."""
    return (
        f"{what}: {_plural(len(unknown), 'unknown concept key')}, neither the id, the name nor "
        f"the WordNet id of a registered concept: {listed_unknown(unknown)}. Check the "
        f"spelling, or {INGEST_HINT} if they are new concepts"
    )


def listed_unknown(unknown: tuple[UnknownKey, ...] | list[UnknownKey]) -> str:
    """The first :data:`MAX_SHOWN` unknown keys, each with where it was and its nearest ids."""
    items = []
    for item in unknown[:MAX_SHOWN]:
        text = repr(item.key)
        if item.place:
            text += f" at {item.place}"
        if item.count > 1:
            text += f" ({item.count} times)"
        if item.nearest:
            text += " (nearest: " + ", ".join(repr(c) for c in item.nearest) + ")"
        items.append(text)
    more = len(unknown) - len(items)
    return "; ".join(items) + (f"; and {more} more" if more else "")


class ConceptKeys:
    """The registered concepts as keys: id, display name and WordNet id of each.

    Built once from the registry (or a concept file), then used for any number of inputs.
    Lookups are dictionary reads, so 10^5 keys take a fraction of a second; only the keys a
    message lists are compared with every id and name for the nearest ones.
    """

    __slots__ = ("_ids", "_names", "_wnids", "_folded", "_pool", "_sorted")

    def __init__(self, concepts: Iterable[tuple[str, str] | tuple[str, str, str | None]]) -> None:
        """
        Args:
            concepts: ``(concept id, display name)`` or ``(concept id, display name, wnid)``
                per concept, the id as stored (see :func:`normalise_concept_id`); the wnid
                may be None.

        Raises:
            ValueError: The same id twice (the registry's primary key rules this out).
        """
        ids: dict[str, str] = {}
        names: dict[str, list[str]] = {}
        wnids: dict[str, list[str]] = {}
        for entry in concepts:
            concept, name = entry[0], entry[1]
            wnid = entry[2] if len(entry) > 2 else None  # type: ignore[misc]
            if concept in ids:
                raise ValueError(f"concept id {concept!r} given twice")
            ids[concept] = name
            if name:
                names.setdefault(unicodedata.normalize("NFC", name).strip(), []).append(concept)
            if wnid:
                wnids.setdefault(wnid.strip(), []).append(concept)
        self._ids = ids
        self._names = names
        self._wnids = wnids
        self._folded: dict[str, list[str]] | None = None
        self._pool: dict[str, list[str]] | None = None
        self._sorted: tuple[list[str], list[str]] | None = None

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, concept: object) -> bool:
        return concept in self._ids

    @property
    def ids(self) -> list[str]:
        """The concept ids, in the order given."""
        return list(self._ids)

    def name_of(self, concept: str) -> str:
        """The display name of the concept with id ``concept``."""
        return self._ids[concept]

    def _lookup(self, key: str) -> tuple[str | None, str | None, list[str]]:
        """(id, field matched, candidates when ambiguous) for one normalised key."""
        if key in self._ids:
            return key, BY_ID, []
        for field, table in ((BY_NAME, self._names), (BY_WNID, self._wnids)):
            hits = table.get(key)
            if hits:
                if len(hits) == 1:
                    return hits[0], field, []
                return None, field, hits
        return None, None, []

    def match(self, keys: Iterable[str] | Iterable[tuple[str, str | None]], what: str) -> KeyMatch:
        """Match every key, keeping the unknown ones for a report instead of failing.

        Args:
            keys: The keys, or ``(key, place)`` pairs where ``place`` says where the key was
                read (``"rdm.csv line 4"``) for messages.
            what: The input, for messages (``"space file things.csv"``).

        Raises:
            InputError: A key is not text or empty, or is the name (or WordNet id) of several
                concepts and not the id of any (all such keys in one message, each with the
                candidates' ids).
        """
        out_keys: list[str] = []
        places: list[str | None] = []
        ids: list[str | None] = []
        by: list[str | None] = []
        unknown: dict[str, list] = {}  # key -> [place, count]
        ambiguous: dict[str, tuple[str | None, str, list[str]]] = {}
        for entry in keys:
            if isinstance(entry, tuple):
                raw, place = entry
            else:
                raw, place = entry, None
            key = _normalise_text(raw, place or what, "concept key")
            concept, field, candidates = self._lookup(key)
            out_keys.append(key)
            places.append(place)
            ids.append(concept)
            by.append(field if concept is not None else None)
            if candidates:
                ambiguous.setdefault(key, (place, field or "", candidates))
            elif concept is None:
                seen = unknown.get(key)
                if seen is None:
                    unknown[key] = [place, 1]
                else:
                    seen[1] += 1
        if ambiguous:
            raise InputError(self._ambiguous_message(what, ambiguous))
        listed = []
        for i, (key, (place, count)) in enumerate(unknown.items()):
            nearest = self.nearest(key) if i < MAX_SHOWN else ()
            listed.append(UnknownKey(key, place, count, nearest))
        return KeyMatch(what, tuple(out_keys), tuple(places), tuple(ids), tuple(by), tuple(listed))

    def resolve(
        self, keys: Iterable[str] | Iterable[tuple[str, str | None]], what: str
    ) -> list[str]:
        """The concept id of every key, in input order; any unknown key is an error.

        Args:
            keys: As for :meth:`match`.
            what: As for :meth:`match`.

        Raises:
            InputError: A malformed or ambiguous key, or unknown keys: one message with how
                many, the first ten with where they were and their nearest ids, and the hint
                to run ``semwh ingest concepts`` first.
        """
        found = self.match(keys, what)
        found.raise_unknown()
        return [c for c in found.ids if c is not None]

    def _ambiguous_message(
        self, what: str, ambiguous: dict[str, tuple[str | None, str, list[str]]]
    ) -> str:
        items = []
        for key, (place, field, candidates) in list(ambiguous.items())[:MAX_SHOWN]:
            label = "name" if field == BY_NAME else "WordNet id"
            text = f"{key!r}" + (f" at {place}" if place else "")
            ids = ", ".join(repr(c) for c in candidates[:MAX_SHOWN])
            items.append(f"{text} is the {label} of {len(candidates)} concepts ({ids})")
        more = len(ambiguous) - len(items)
        listed = "; ".join(items) + (f"; and {more} more" if more else "")
        return f"{what}: {listed}: use the concept id instead"

    def nearest(self, key: str, n: int = MAX_NEAREST) -> tuple[str, ...]:
        """Up to ``n`` ids of concepts whose id or name is close to ``key``.

        Same spelling up to case, ``_``, ``-`` and spaces comes first, then
        :func:`difflib.get_close_matches` over ids and names. Over many concepts, only the
        strings next to the key (or to the key less its last characters) in alphabetical
        order of their start or of their end are compared, so one key costs milliseconds
        whatever the registry's size.
        """
        if self._folded is None:
            self._build_hints()
        assert self._folded is not None and self._pool is not None
        folded_key = _fold(key)
        out: list[str] = []
        for concept in self._folded.get(folded_key, []):
            if concept not in out:
                out.append(concept)
        if self._sorted is None:
            close = difflib.get_close_matches(key, list(self._pool), n=2 * n, cutoff=0.6)
            found = [self._pool[text] for text in close]
        else:
            candidates: set[str] = set()
            forward, backward = self._sorted
            for cut in range(min(4, len(folded_key))):
                probe = folded_key[: len(folded_key) - cut]
                at = bisect.bisect_left(forward, probe)
                candidates.update(forward[max(0, at - _WINDOW) : at + _WINDOW])
                probe = folded_key[::-1][: len(folded_key) - cut]
                at = bisect.bisect_left(backward, probe)
                candidates.update(t[::-1] for t in backward[max(0, at - _WINDOW) : at + _WINDOW])
            close = difflib.get_close_matches(folded_key, sorted(candidates), n=2 * n, cutoff=0.6)
            found = [self._folded[text] for text in close]
        for concepts in found:
            for concept in concepts:
                if concept not in out:
                    out.append(concept)
        return tuple(out[:n])

    def _build_hints(self) -> None:
        folded: dict[str, list[str]] = {}
        pool: dict[str, list[str]] = {}
        for concept, name in self._ids.items():
            for text in {concept, name}:
                if text:
                    folded.setdefault(_fold(text), []).append(concept)
                    pool.setdefault(text, []).append(concept)
        self._folded, self._pool = folded, pool
        if len(pool) > _FULL_SEARCH:
            self._sorted = (sorted(folded), sorted(f[::-1] for f in folded))
