"""No code from a model folder.

transformers and sentence-transformers run Python shipped with a checkpoint when its config
names classes through ``auto_map`` (or a sentence-transformers module outside the package)
and the caller trusts it; with the choice left open, transformers asks on the terminal.
semwh never runs such code: every load passes :data:`NO_CUSTOM_CODE`, and
:func:`refuse_custom_code` refuses a folder that asks for its own code before any model
library reads it, so no command ever prompts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from semwh.errors import InputError

#: Keyword arguments of every transformers / sentence-transformers load.
NO_CUSTOM_CODE: Final[dict[str, Any]] = {"trust_remote_code": False}

#: JSON files that hold data, not settings: never read here (a tokenizer.json can be large).
_DATA_FILES = frozenset({"tokenizer.json", "vocab.json"})
#: Configs are small; anything larger is not one.
_MAX_CONFIG_BYTES = 16 * 1024 * 1024
#: Keys through which a config asks for code of its own.
_CODE_KEYS = ("auto_map", "custom_pipelines")

_ADVICE = (
    "semwh never runs code from a model folder; use a checkpoint of a class that "
    "transformers ships (save_pretrained of a built-in model)"
)


def _code_request(value: Any) -> str | None:
    """The first key of a parsed config that asks for custom code, or None."""
    if isinstance(value, dict):
        for key in _CODE_KEYS:
            if value.get(key):
                return key
        if value.get("trust_remote_code") is True:
            return "trust_remote_code"
        for item in value.values():
            found = _code_request(item)
            if found is not None:
                return found
    elif isinstance(value, list):
        for item in value:
            found = _code_request(item)
            if found is not None:
                return found
    return None


def _read(path: Path) -> Any:
    try:
        if path.stat().st_size > _MAX_CONFIG_BYTES:
            return _scanned(path)
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: cannot read this model config ({exc})") from exc


def _scanned(path: Path) -> Any:
    """A config too large to parse, scanned for the keys that ask for code: a stand-in
    ``{key: True}`` for the first one found (a key split across two chunks is found too:
    the chunks overlap), else None."""
    markers = [f'"{key}"'.encode() for key in (*_CODE_KEYS, "trust_remote_code")]
    overlap = max(len(m) for m in markers)
    tail = b""
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            window = tail + chunk
            for marker in markers:
                if marker in window:
                    return {marker.decode().strip('"'): True}
            tail = window[-overlap:]
    return None


def _configs(folder: Path) -> Iterator[Path]:
    """The JSON files of a model folder and of its sentence-transformers module folders."""
    seen: set[Path] = set()
    folders = [folder]
    modules = folder / "modules.json"
    if modules.is_file():
        listed = _read(modules)
        for entry in listed if isinstance(listed, list) else []:
            if not isinstance(entry, dict):
                continue
            kind = str(entry.get("type", ""))
            if not kind.startswith("sentence_transformers."):
                raise InputError(
                    f"{modules}: module {kind!r} is code from outside sentence-transformers; "
                    + _ADVICE
                )
            sub = (folder / str(entry.get("path", ""))).resolve()
            if sub.is_dir() and sub.is_relative_to(folder.resolve()):
                folders.append(sub)
    for where in folders:
        for path in sorted(where.glob("*.json")):
            if path in seen or path.name in _DATA_FILES or path.name.endswith(".index.json"):
                continue
            seen.add(path)
            if path.is_file():
                yield path


def refuse_custom_code(folder: str | Path) -> None:
    """Refuse a model folder whose configs ask for Python code of its own.

    Reads every settings file of the folder (``config.json``, the tokenizer's, the image
    processor's, ``modules.json`` and the sentence-transformers module folders it lists)
    without importing any model library.

    Raises:
        InputError: A config has ``auto_map`` (or ``custom_pipelines``, or sets
            ``trust_remote_code``), or ``modules.json`` names a module class outside
            sentence-transformers; the message names the file.
    """
    root = Path(folder)
    if not root.is_dir():
        return
    for path in _configs(root):
        key = _code_request(_read(path))
        if key is not None:
            raise InputError(
                f"{path}: the model asks to run its own Python code ({key}); {_ADVICE}"
            )


def refuse_config_code(config: Any, reference: str) -> None:
    """Refuse a loaded transformers config that names custom classes (a hub checkpoint's).

    Raises:
        InputError: The config has ``auto_map``.
    """
    if getattr(config, "auto_map", None):
        raise InputError(
            f"{reference}: its config.json asks to run the checkpoint's own Python code "
            f"(auto_map); {_ADVICE}"
        )
