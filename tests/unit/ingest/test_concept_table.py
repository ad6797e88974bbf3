"""Concept files: CSV, TSV, .txt and Parquet with lab ids, names, WordNet ids and attributes."""

from __future__ import annotations

import datetime as dt
import unicodedata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from semwh.errors import InputError
from semwh.ingest.concept_table import ConceptRow, read_concept_table

# A THINGS-like concept list: lab ids with and without a WordNet id, multi-word ids, a name
# column named as THINGS names it, and attribute columns.
THINGS_TSV = (
    "Word\tuniqueID\tWordNet offset\tWordnet ID4\tcategory\tconcreteness\n"
    "aardvark\taardvark\tn02503517\taardvark.n.01\tanimal\t4.9\n"
    "bean bag\tbean_bag\t\t\tfurniture\t4.8\n"
    "ice cream\tice_cream\tn07614500\tice_cream.n.01\tfood\t\n"
    "bike helmet\tbike_helmet\t\t\t\t4.7\n"
)
THINGS_OPTIONS = {"id_column": "uniqueID", "name_column": "Word", "wnid_column": "WordNet offset"}


def _write(path: Path, text: str, bom: bool = False) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def _error(path: Path, **options) -> str:
    with pytest.raises(InputError) as err:
        read_concept_table(path, **options)
    return str(err.value)


def test_things_style_tsv_with_chosen_columns(tmp_path):
    path = _write(tmp_path / "things_concepts.tsv", THINGS_TSV, bom=True)
    table = read_concept_table(path, **THINGS_OPTIONS)
    assert (table.format, table.id_column, table.name_column, table.wnid_column) == (
        "tsv",
        "uniqueID",
        "Word",
        "WordNet offset",
    )
    assert table.columns[0] == "Word"  # the byte-order mark is gone
    assert table.attribute_columns == ("Wordnet ID4", "category", "concreteness")
    assert table.concepts == ["aardvark", "bean_bag", "ice_cream", "bike_helmet"]
    assert table.rows[0] == ConceptRow(
        "aardvark",
        "aardvark",
        "n02503517",
        {"Wordnet ID4": "aardvark.n.01", "category": "animal", "concreteness": "4.9"},
        2,
        f"{path} line 2",
    )
    bean, cream, helmet = table.rows[1:]
    assert (bean.name, bean.wnid, bean.attributes) == (
        "bean bag",
        None,
        {"category": "furniture", "concreteness": "4.8"},
    )
    assert cream.attributes == {"Wordnet ID4": "ice_cream.n.01", "category": "food"}
    assert (helmet.wnid, helmet.attributes, helmet.line) == (None, {"concreteness": "4.7"}, 5)
    keys = table.keys()
    assert keys.resolve(["bean bag", "ice_cream", "n02503517"], "f") == [
        "bean_bag",
        "ice_cream",
        "aardvark",
    ]


def test_default_columns_names_and_wnids(tmp_path):
    text = (
        "concept,name,wnid,category\n"
        "bean_bag,,,furniture\n"
        '"Ice_Cream ",Ice cream,n07614500,"food, sweet"\n'
        "n02084071,,,animal\n"
    )
    table = read_concept_table(_write(tmp_path / "c.csv", text))
    assert table.format == "csv" and table.attribute_columns == ("category",)
    bean, cream, dog = table.rows
    assert (bean.concept, bean.name, bean.name_given, bean.wnid) == (
        "bean_bag",
        "bean bag",
        False,
        None,
    )
    assert (cream.concept, cream.name, cream.wnid) == ("Ice_Cream", "Ice cream", "n07614500")
    assert cream.attributes == {"category": "food, sweet"}
    # A wnid column is there: an empty cell means no WordNet id, even for a WordNet-like id.
    assert dog.wnid is None
    # Without a wnid column, an id of the WordNet form is its own WordNet id.
    plain = read_concept_table(_write(tmp_path / "p.csv", "concept\nn02084071\nbean_bag\n"))
    assert [r.wnid for r in plain.rows] == ["n02084071", None]
    # A headed list of WordNet ids takes its ids from the wnid column.
    wnids = read_concept_table(_write(tmp_path / "w.csv", "wnid,name\nn02084071,dog\n"))
    assert (wnids.id_column, wnids.rows[0].concept, wnids.rows[0].wnid) == (
        "wnid",
        "n02084071",
        "n02084071",
    )


def test_ids_are_nfc_and_trimmed(tmp_path):
    decomposed = unicodedata.normalize("NFD", "café_crème")
    table = read_concept_table(_write(tmp_path / "c.csv", f"concept\n  {decomposed}\n"))
    assert table.concepts == ["café_crème"] and table.rows[0].name == "café crème"


def test_txt_sniffs_tabs_or_commas(tmp_path):
    tabs = read_concept_table(_write(tmp_path / "t.txt", "concept\tname\nbean_bag\tBean, bag\n"))
    assert tabs.format == "tsv" and tabs.rows[0].name == "Bean, bag"
    commas = read_concept_table(_write(tmp_path / "c.txt", "concept,name\nbean_bag,Bean bag\n"))
    assert commas.format == "csv" and commas.rows[0].name == "Bean bag"


def test_legacy_wnid_lists_still_read(tmp_path):
    text = "# concepts\nn02084071\tdog\n\nn01503061,bird\nn02121808 domestic_cat\nn01440764\n"
    table = read_concept_table(_write(tmp_path / "wnids.txt", text))
    assert table.format == "wnids" and table.id_column is None
    assert [(r.concept, r.wnid, r.name, r.name_given, r.line) for r in table.rows] == [
        ("n02084071", "n02084071", "dog", True, 2),
        ("n01503061", "n01503061", "bird", True, 4),
        ("n02121808", "n02121808", "domestic cat", True, 5),
        ("n01440764", "n01440764", "n01440764", False, 6),
    ]
    tsv = read_concept_table(_write(tmp_path / "concepts.tsv", "n02084071\tdog\n"))
    assert tsv.format == "wnids" and tsv.rows[0].name == "dog"
    cases = {
        "n02084071\nn0208407x\n": "line 2: 'n0208407x' is not a WordNet 3.0 noun id",
        "n02084071\naardvark\n": "line 2: 'aardvark' is not a WordNet 3.0 noun id",
        "n02084071\nn02084071 dog\n": "line 2: concept 'n02084071' appears again (first at",
        "# only a comment\n": "the file holds no concepts",
        "": "the file is empty",
    }
    path = tmp_path / "w.txt"
    for text, expected in cases.items():
        message = _error(_write(path, text))
        assert str(path) in message and expected in message
    message = _error(_write(path, "n02084071\n"), id_column="concept")
    assert "without a header has no columns to choose" in message


def test_parquet_with_attributes_of_their_own_types(tmp_path):
    table = pa.table(
        {
            "concept": ["aardvark", "bean_bag", "ice_cream", "bike_helmet"],
            "name": ["aardvark", None, "ice cream", "bike helmet"],
            "wnid": ["n02503517", None, "n07614500", ""],
            "category": pa.array(["animal", "furniture", "food", None]).dictionary_encode(),
            "concreteness": [4.9, float("nan"), 5.0, 4.7],
            "n_images": pa.array([12, 13, None, 12], pa.int32()),
            "manmade": [False, True, True, True],
            "added": [dt.date(2019, 10, 15)] * 4,
        }
    )
    path = tmp_path / "things.parquet"
    pq.write_table(table, path)
    read = read_concept_table(path)
    assert read.format == "parquet" and read.concepts == list(table.column("concept").to_pylist())
    aardvark, bean, cream, helmet = read.rows
    assert aardvark.attributes == {
        "category": "animal",
        "concreteness": 4.9,
        "n_images": 12,
        "manmade": False,
        "added": "2019-10-15",
    }
    assert (aardvark.line, aardvark.place) == (0, f"{path} row 0")
    assert (bean.name, bean.name_given, bean.wnid) == ("bean bag", False, None)
    assert "concreteness" not in bean.attributes and "n_images" not in cream.attributes
    assert helmet.wnid is None and "category" not in helmet.attributes
    pq.write_table(pa.table({"id": [3, 1], "label": ["three", "one"]}), path)
    ints = read_concept_table(path, id_column="id", name_column="label")
    assert ints.concepts == ["3", "1"] and ints.rows[0].name == "three"


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        ({"concept": [1.5]}, "column 'concept' holds double; concept ids are text"),
        ({"concept": ["a", "b", "a"]}, "row 2: concept 'a' appears again (first at row 0)"),
        ({"concept": ["a", None]}, "row 1: empty concept id"),
        ({"concept": ["a/b"]}, "row 0: concept id 'a/b' contains '/'"),
        ({"concept": ["a"], "name": [3]}, "column 'name' holds int64, not text"),
        ({"concept": ["a"], "wnid": ["n123"]}, "row 0: 'n123' in column 'wnid' is not a"),
        ({"concept": ["a"], "v": [[1.0]]}, "column 'v' holds list<"),
        ({"concept": ["a"], "v": [float("inf")]}, "row 0: column 'v' is inf"),
        ({"Word": ["a"]}, "no column 'concept' with the concept ids (columns found: 'Word')"),
        ({"concept": pa.array([], pa.string())}, "the file holds no concepts"),
    ],
)
def test_parquet_errors(tmp_path, columns, expected):
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table(columns), path)
    message = _error(path)
    assert message.startswith(str(path)) and expected in message


def test_missing_id_column_lists_the_columns_and_the_option(tmp_path):
    path = _write(tmp_path / "things_concepts.tsv", THINGS_TSV)
    message = _error(path)
    assert message == (
        f"{path} line 1: no column 'concept' with the concept ids (columns found: 'Word', "
        "'uniqueID', 'WordNet offset', 'Wordnet ID4', 'category', 'concreteness'); name the id "
        "column with --id-column (and the names' and WordNet ids' with --name-column and "
        "--wnid-column)"
    )
    message = _error(path, id_column="uniqueID", name_column="word")
    assert message.startswith(f"{path} line 1: no column 'word' (given by --name-column)")
    assert "'Word'" in message


def test_synset_names_are_kept_for_the_ingest_to_read(tmp_path):
    path = _write(tmp_path / "things_concepts.tsv", THINGS_TSV)
    table = read_concept_table(path, id_column="uniqueID", wnid_column="Wordnet ID4")
    assert table.rows[0].wnid == "aardvark.n.01"
    bad = _write(tmp_path / "bad.csv", "concept,wnid\na,aardvark.v.01\n")
    message = _error(bad)
    assert message.startswith(f"{bad} line 2: 'aardvark.v.01' in column 'wnid' is not")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("concept\na\nb\na\n", "line 4: concept 'a' appears again (first at line 2)"),
        ("concept,name\na,x\nb\n", "line 3: 1 fields, the header (line 1) has 2"),
        ("concept,name\na,x,y\n", "line 2: 3 fields, the header (line 1) has 2"),
        ("concept\nbike/helmet\n", "line 2: concept id 'bike/helmet' contains '/'"),
        ("concept,name\n\nok,x\n ,y\n", "line 4: empty concept id"),
        ('concept\n"bike\thelmet"\n', "line 2: concept id 'bike\\thelmet' contains the control"),
        ('concept,name\na,"x\ny"\n', "concept name 'x\\ny' contains the control character"),
        ("concept,wnid\na,n0208407\n", "line 2: 'n0208407' in column 'wnid' is not a WordNet"),
        ("concept,name,concept\na,b,c\n", "line 1: column 'concept' appears twice"),
        ("concept,,x\na,b,c\n", "line 1: column 2 of the header has no name"),
        ("concept,name\n", "the file holds no concepts (only a header)"),
        ('concept\n"a\n', "line 2: malformed CSV: unexpected end of data"),
    ],
)
def test_text_errors_name_the_line(tmp_path, text, expected):
    path = _write(tmp_path / "c.csv", text)
    message = _error(path)
    assert message.startswith(str(path)) and expected in message


def test_unreadable_files(tmp_path):
    assert "unknown concept file type '.xlsx'" in _error(_write(tmp_path / "c.xlsx", "x"))
    bad = tmp_path / "c.csv"
    bad.write_bytes(b"concept\nok\n\xff\n")
    assert _error(bad) == f"{bad} line 3: not valid UTF-8 (invalid start byte)"
    assert "does not exist" in _error(tmp_path / "none.parquet")
    assert "not a readable Parquet file" in _error(_write(tmp_path / "c.parquet", "concept\n"))
