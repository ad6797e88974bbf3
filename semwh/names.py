"""The one rule for names of spaces, models and word models.

A name is non-empty printable text without leading or trailing blanks, without ``..`` and
without a backslash, so that it reads the same in SQL, in messages and in the vectors tree.
It is in Unicode normal form NFKC: a name with compatibility characters (full-width
``ｇｌｏｖｅ５０``, ligatures) would look like another (``glove50``) and be a different space.
``/`` separates MODEL and LAYER and belongs to layer spaces only: a word or external space
named ``a/b`` would collide with the layer ``b`` of model ``a``.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

from semwh.errors import ConfigError, InvalidNameError

#: Longest percent-encoded name (a part of a layer name): names are folder names of the
#: vectors tree, and file systems allow 255 bytes.
MAX_ENCODED = 200

RULE = (
    "non-empty printable text in NFKC form without leading or trailing blanks, '..' or '\\'; "
    "'/' only in MODEL/LAYER layer space names"
)


def check_name(name: object, what: str = "space", *, layer: bool = False) -> str:
    """Return ``name`` if it follows the naming rule.

    Args:
        name: The name to check.
        what: What it names, for the message (space, word model, model, ...).
        layer: A layer space's MODEL/LAYER name: one '/' between two valid parts.

    Raises:
        InvalidNameError: The name breaks the rule (the message states it).
    """
    text = name if isinstance(name, str) else ""
    problem = _problem(text, layer) if isinstance(name, str) else "not text"
    if problem is not None:
        raise InvalidNameError(f"{what} name {name!r} is not valid ({problem}): use {RULE}")
    return text


def _problem(name: str, layer: bool) -> str | None:
    if not name:
        return "empty"
    if name != name.strip():
        return "leading or trailing blanks"
    if not name.isprintable():
        return "a control or unprintable character"
    plain = unicodedata.normalize("NFKC", name)
    if plain != name:
        return f"compatibility characters such as full-width letters; write it {plain!r}"
    if ".." in name:
        return "'..'"
    if "\\" in name:
        return "a backslash"
    longest = max(len(quote(part, safe="")) for part in name.split("/"))
    if longest > MAX_ENCODED:
        return (
            f"too long: a name is a folder name of the warehouse, at most {MAX_ENCODED} "
            "characters once percent-encoded"
        )
    if "/" in name:
        if not layer:
            return "'/' is reserved for MODEL/LAYER layer spaces"
        model, _, rest = name.partition("/")
        if not model.strip() or not rest.strip() or model != model.strip():
            return "MODEL/LAYER needs a model and a layer"
    return None


def name_list(value: object, what: str) -> list[str]:
    """One name or a sequence of names, as a list: a single string is one item, never read
    as its letters (``tests = "rsa"``, ``sweep("efficientnet_lite0", ...)``).

    Args:
        value: A string, or a list or tuple of strings.
        what: What the names are, for the message (e.g. ``[analysis] tests``).

    Raises:
        ConfigError: Anything else (a number, a table, a list holding a non-string).
    """
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(
        f'{what} = {value!r}: give a name or a list of names (for example ["2v2", "rsa"])'
    )
