"""Writers of word-vector files in their real layouts, for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def text_line(word: str, vector: np.ndarray) -> str:
    # str of a float32 is its shortest round-tripping decimal.
    return word + " " + " ".join(str(v) for v in vector)


def write_glove(path: Path, words: list[str], matrix: np.ndarray) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for word, vector in zip(words, matrix.astype(np.float32), strict=True):
            out.write(text_line(word, vector) + "\n")
    return path


def write_word2vec_text(
    path: Path, words: list[str], matrix: np.ndarray, *, fasttext: bool = False, header=None
) -> Path:
    n, d = matrix.shape
    with path.open("w", encoding="utf-8") as out:
        out.write(header if header is not None else f"{n} {d}\n")
        for word, vector in zip(words, matrix.astype(np.float32), strict=True):
            # fastText's .vec files end every line with a space.
            out.write(text_line(word, vector) + (" \n" if fasttext else "\n"))
    return path


def write_word2vec_binary(
    path: Path, words: list[str], matrix: np.ndarray, *, newline: bool = True, header=None
) -> Path:
    """The word2vec C / gensim layout: 'count dim\\n', then 'word ' + dim float32 LE [+ '\\n']."""
    n, d = matrix.shape
    with path.open("wb") as out:
        out.write(header if header is not None else f"{n} {d}\n".encode())
        for word, vector in zip(words, matrix, strict=True):
            out.write(word.encode("utf-8") + b" ")
            out.write(np.asarray(vector, dtype="<f4").tobytes())
            if newline:
                out.write(b"\n")
    return path
