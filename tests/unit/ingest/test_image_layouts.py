"""scan_images and read_image_manifest on small folders of real image files (never decoded)."""

from __future__ import annotations

import io
import os
import unicodedata

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image as PILImage

from semwh.errors import ConfigError, InputError
from semwh.ingest import image_layouts, images
from semwh.ingest.image_layouts import (
    ImageEntry,
    check_key,
    read_image_manifest,
    scan_images,
)


def _image_bytes(fmt: str) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (4, 3), (200, 30, 30)).save(buf, fmt)
    return buf.getvalue()


JPEG = _image_bytes("JPEG")
PNG = _image_bytes("PNG")


def _files(root, *names, data=JPEG):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _read(listing):
    return [(e.concept_key, e.stimulus, e.where) for e in listing.entries]


def test_things_folder_layout_with_multi_word_ids(tmp_path):
    root = _files(
        tmp_path / "object_images",
        "aardvark/aardvark_01b.jpg",
        "aardvark/aardvark_02s.jpg",
        "bean_bag/bean_bag_01b.jpg",
        "ice_cream/ice_cream_03s.jpg",
        # ImageFolder takes any depth below the class folder.
        "ice_cream/more/ice_cream_04n.JPEG",
        # Hidden files and folders and macOS' archive leftovers are not images of the set.
        "aardvark/._aardvark_01b.jpg",
        ".thumbnails/aardvark/x.jpg",
        "__MACOSX/aardvark/._aardvark_02s.jpg",
    )
    (root / "aardvark" / "notes.txt").write_text("licence")
    (root / "things_concepts.tsv").write_text("concept\n")
    (root / ".DS_Store").write_bytes(b"\0")
    listing = scan_images(root)
    assert listing.layout == "folder" and listing.source == root.resolve()
    assert _read(listing) == [
        ("aardvark", "aardvark_01b", "aardvark/aardvark_01b.jpg"),
        ("aardvark", "aardvark_02s", "aardvark/aardvark_02s.jpg"),
        ("bean_bag", "bean_bag_01b", "bean_bag/bean_bag_01b.jpg"),
        ("ice_cream", "ice_cream_03s", "ice_cream/ice_cream_03s.jpg"),
        ("ice_cream", "ice_cream_04n", "ice_cream/more/ice_cream_04n.JPEG"),
    ]
    first = listing.entries[0]
    assert first == ImageEntry(
        root.resolve() / "aardvark" / "aardvark_01b.jpg",
        "aardvark",
        "aardvark_01b",
        None,
        "aardvark/aardvark_01b.jpg",
        None,
    )
    assert listing.concepts == ["aardvark", "bean_bag", "ice_cream"]
    assert listing.not_images == {".tsv": 1, ".txt": 1} and listing.n_not_images == 2
    assert listing.skipped == ()


def test_folder_names_are_ids_as_written_in_nfc(tmp_path):
    nfd = unicodedata.normalize("NFD", "café")
    root = _files(tmp_path / "set", f"{nfd}/1.jpg", " spaced /2.png", "ok/bad\x07name.jpg")
    listing = scan_images(root)
    assert [(e.concept_key, e.stimulus) for e in listing.entries] == [
        ("spaced", "2"),
        ("café", "1"),
    ]
    assert listing.entries[1].concept_key == unicodedata.normalize("NFC", "café")
    assert listing.skipped == ((str(root / "ok" / "bad\x07name.jpg"), listing.skipped[0][1]),)
    assert "not a valid stimulus id (holds the control character U+0007)" in listing.skipped[0][1]


def test_imagenet_folders_keep_their_labels(tmp_path):
    root = _files(
        tmp_path / "train",
        "n01440764/n01440764_10026.JPEG",
        "n02121808/n02121808_17_domestic_cat.jpg",
        "n02121808/n02084071_5_dog.jpg",
    )
    listing = scan_images(root)
    assert [(e.concept_key, e.stimulus, e.label) for e in listing.entries] == [
        ("n01440764", "n01440764_10026", None),
        ("n02121808", "n02084071_5_dog", None),  # the folder decides; another wnid's label no
        ("n02121808", "n02121808_17_domestic_cat", "domestic_cat"),
    ]


def test_prefix_names_without_known_concepts(tmp_path):
    root = _files(
        tmp_path / "flat",
        "aardvark_01b.jpg",
        "bean_bag_01b.jpg",
        "ice_cream_03s.png",
        "cat_0001.jpg",
        "cat_photo.jpg",
        "hotdog.jpg",
        "_01.jpg",
    )
    listing = scan_images(root)
    assert listing.layout == "prefix"
    assert [(e.concept_key, e.stimulus) for e in listing.entries] == [
        ("aardvark", "aardvark_01b"),
        ("bean_bag", "bean_bag_01b"),
        ("cat", "cat_0001"),
        ("ice_cream", "ice_cream_03s"),
    ]
    why = {os.path.basename(path): reason for path, reason in listing.skipped}
    assert set(why) == {"cat_photo.jpg", "hotdog.jpg", "_01.jpg"}
    assert "the part after the last '_' holds no digit" in why["cat_photo.jpg"]
    assert "ingest the concepts first" in why["cat_photo.jpg"]
    assert "needs a '_' in the name 'hotdog'" in why["hotdog.jpg"]


def test_prefix_names_take_the_longest_known_concept(tmp_path):
    root = _files(
        tmp_path / "flat",
        "bean_bag_01b.jpg",
        "bean_02.jpg",
        "cat_photo.jpg",
        "hot_dog.jpg",
        "aardvark.jpg",
        "bike_helmet_extra_large.jpg",
        "zebra_01.jpg",
    )
    known = {"bean", "bean_bag", "cat", "hot_dog", "aardvark", "bike", "bike_helmet"}
    listing = scan_images(root, layout="prefix", known_concepts=known)
    assert [(e.concept_key, e.stimulus) for e in listing.entries] == [
        ("aardvark", "aardvark"),
        ("bean", "bean_02"),
        ("bean_bag", "bean_bag_01b"),
        ("bike_helmet", "bike_helmet_extra_large"),
        ("cat", "cat_photo"),
        ("hot_dog", "hot_dog"),
        ("zebra", "zebra_01"),  # no known prefix: the name's own reading, a new concept
    ]
    assert listing.skipped == ()

    # With only 'bean' known, bean_bag_01b reads as a new concept: undecided, not a bean.
    listing = scan_images(root, layout="prefix", known_concepts={"bean"})
    why = dict(listing.skipped)[str(root / "bean_bag_01b.jpg")]
    assert "begins with the known concept 'bean' but reads as the concept 'bean_bag'" in why
    assert ("bean", "bean_02") in [(e.concept_key, e.stimulus) for e in listing.entries]


def test_imagenet_flat_names_keep_their_meaning(tmp_path):
    root = _files(
        tmp_path / "imgs",
        "n01443537_11099_goldfish.jpg",
        "n02121808_17_domestic_cat.jpg",
        "n02084071_1365.JPEG",
    )
    listing = scan_images(root, known_concepts={"n01443537"})
    assert listing.layout == "prefix"
    assert [(e.concept_key, e.stimulus, e.label) for e in listing.entries] == [
        ("n01443537", "n01443537_11099_goldfish", "goldfish"),
        ("n02084071", "n02084071_1365", None),
        ("n02121808", "n02121808_17_domestic_cat", "domestic_cat"),
    ]


def test_the_demo_sample_reads_as_before(samples_dir):
    listing = scan_images(samples_dir)
    assert listing.layout == "prefix" and len(listing.entries) == 1000
    assert len(listing.concepts) == 200 and listing.skipped == ()
    for entry in listing.entries:
        assert entry.concept_key == entry.path.name.split("_")[0]
        assert entry.stimulus == entry.path.stem


def test_mixed_or_empty_folders_say_what_was_found(tmp_path):
    root = _files(tmp_path / "mixed", "a_01.jpg", "b_01.jpg", "cat/x.jpg", "dog/y.jpg", "dog/z.png")
    with pytest.raises(InputError) as err:
        scan_images(root)
    message = str(err.value)
    assert f"image folder {root}" in message
    assert "holds 2 image file(s) directly in it (e.g. a_01.jpg)" in message
    assert "and 3 in 2 sub-folder(s) (e.g. cat/x.jpg)" in message
    assert "--layout folder" in message and "--layout prefix" in message
    assert "--manifest" in message

    # An explicit layout settles it: files outside a concept folder are reported.
    folder = scan_images(root, layout="folder")
    assert folder.concepts == ["cat", "dog"]
    assert all("in no concept's folder" in why for _, why in folder.skipped)
    assert len(folder.skipped) == 2
    prefix = scan_images(root, layout="prefix")
    assert [(e.concept_key, e.stimulus) for e in prefix.entries] == [("a", "a_01"), ("b", "b_01")]
    assert len(prefix.skipped) == 3  # x, y, z: no '_' in their names

    empty = _files(tmp_path / "empty", "readme.md", "data/list.csv", "data/list2.csv")
    with pytest.raises(InputError, match=r"holds no image files .*2 \.csv, 1 \.md.*--layout"):
        scan_images(empty)
    assert scan_images(empty, layout="folder").entries == ()
    with pytest.raises(ConfigError, match="unknown image layout 'flat'"):
        scan_images(root, layout="flat")
    with pytest.raises(InputError, match="does not exist"):
        scan_images(tmp_path / "nope")


def test_stimulus_ids_are_unique(tmp_path):
    root = _files(tmp_path / "set", "cat/a_01.jpg", "dog/a_01.jpg", "dog/b.jpg", "dog/b.png")
    with pytest.raises(InputError) as err:
        scan_images(root)
    message = str(err.value)
    assert "cat/a_01.jpg and dog/a_01.jpg both have the stimulus id 'a_01'" in message
    assert "(and 1 more image(s) whose id is taken)" in message
    assert "manifest with a stimulus column" in message


def test_links(tmp_path):
    elsewhere = _files(tmp_path / "elsewhere", "cat/c_01.jpg", "photo.jpg")
    root = _files(tmp_path / "set", "cat/a_01.jpg")
    (root / "cat" / "b_01.jpg").symlink_to(elsewhere / "photo.jpg")
    (root / "cat" / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    (root / "dog").symlink_to(elsewhere / "cat")
    fifo = root / "cat" / "pipe.jpg"
    os.mkfifo(fifo)
    listing = scan_images(root)
    assert [e.where for e in listing.entries] == ["cat/a_01.jpg", "cat/b_01.jpg"]
    assert listing.entries[1].path == root.resolve() / "cat" / "b_01.jpg"  # its own name
    why = dict(listing.skipped)
    assert why[str(root / "cat" / "gone.jpg")] == "does not exist"
    assert why[str(fifo)].startswith("is a named pipe")
    assert why[str(root / "dog")].startswith("is a link to a folder: not followed")


# -- manifests -------------------------------------------------------------------------------


def test_manifest_with_stimulus_ids(tmp_path):
    _files(tmp_path / "photos", "aardvark/01.jpg", "bean_bag/01.jpg", "ice_cream/x.png")
    manifest = tmp_path / "stimuli.csv"
    manifest.write_text(
        "path,concept,stimulus,split\n"
        "photos/aardvark/01.jpg, aardvark ,aardvark_01,train\n"
        "photos/bean_bag/01.jpg,bean_bag,bean_bag_01,\n"
        "\n"
        f"{tmp_path / 'photos' / 'ice_cream' / 'x.png'},ice_cream,,test\n"
        "photos/missing.jpg,ice_cream,ice_cream_02,\n"
    )
    listing = read_image_manifest(manifest)
    assert listing.layout == "manifest" and listing.source == manifest
    photos = tmp_path / "photos"
    assert listing.entries == (
        ImageEntry(
            photos / "aardvark/01.jpg", "aardvark", "aardvark_01", "train", f"{manifest} line 2"
        ),
        ImageEntry(
            photos / "bean_bag/01.jpg", "bean_bag", "bean_bag_01", None, f"{manifest} line 3"
        ),
        ImageEntry(photos / "ice_cream/x.png", "ice_cream", "x", "test", f"{manifest} line 5"),
        ImageEntry(photos / "missing.jpg", "ice_cream", "ice_cream_02", None, f"{manifest} line 6"),
    )


def test_manifest_without_stimulus_tsv_and_parquet(tmp_path):
    _files(tmp_path, "a/n02084071_5_dog.jpg", "b/bean_bag_01b.jpg")
    tsv = tmp_path / "m.tsv"
    tsv.write_text(
        "path\tconcept\na/n02084071_5_dog.jpg\tn02084071\nb/bean_bag_01b.jpg\tbean_bag\n"
    )
    table = pa.table(
        {
            "path": ["a/n02084071_5_dog.jpg", "b/bean_bag_01b.jpg"],
            "concept": ["n02084071", "bean_bag"],
        }
    )
    pq.write_table(table, tmp_path / "m.parquet")
    old = tmp_path / "old.csv"
    old.write_text(
        "path,wnid,label\na/n02084071_5_dog.jpg,n02084071,\nb/bean_bag_01b.jpg,n02084071,bag\n"
    )
    expected = [
        ("n02084071", "n02084071_5_dog", "dog"),
        ("bean_bag", "bean_bag_01b", None),
    ]
    for manifest in (tsv, tmp_path / "m.parquet"):
        listing = read_image_manifest(manifest)
        assert [(e.concept_key, e.stimulus, e.label) for e in listing.entries] == expected
    assert listing.entries[1].where == f"{tmp_path / 'm.parquet'} row 1"
    assert [(e.concept_key, e.label) for e in read_image_manifest(old).entries] == [
        ("n02084071", "dog"),
        ("n02084071", "bag"),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("path,label\na.jpg,dog\n", "line 1: an image manifest needs the columns path and concept"),
        ("path,concept,concept\na.jpg,x,y\n", "line 1: column 'concept' appears twice"),
        ("path,concept\n,dog\n", "line 2: empty path"),
        ("path,concept\na.jpg,dog\nb.jpg, \n", "line 3: empty concept"),
        (
            "path,concept\na.jpg,dog/cat\n",
            "line 2: concept 'dog/cat' is not a valid id (holds '/')",
        ),
        ("path,concept,stimulus\na.jpg,dog,x/1\n", "line 2: stimulus 'x/1' is not a valid id"),
        ("path,concept\na.jpg,dog\nb.jpg\n", "line 3: 1 fields, the header has 2"),
        ("path,wnid\na.jpg,aardvark\n", "line 2: 'aardvark' in the column wnid is not a WordNet"),
        (
            "path,concept\na.jpg,dog\n./a.jpg,cat\n",
            "line 3: the path './a.jpg' names the file of line 2 again",
        ),
        ("path,concept\n", "lists no images"),
    ],
)
def test_malformed_manifest(tmp_path, text, expected):
    manifest = tmp_path / "m.csv"
    manifest.write_text(text)
    with pytest.raises(InputError) as err:
        read_image_manifest(manifest)
    assert f"{manifest}" in str(err.value) and expected in str(err.value)


def test_manifest_stimulus_collisions_and_special_files(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,concept\ncat/a_01.jpg,cat\ndog/a_01.jpg,dog\n")
    with pytest.raises(InputError) as err:
        read_image_manifest(manifest)
    assert (
        f"{manifest}: line 2 and line 3 both have the stimulus id 'a_01'; a stimulus id names "
        "one image: add a stimulus column"
    ) in str(err.value)
    manifest.write_text("path,concept,stimulus\na.jpg,cat,s1\nb.jpg,dog,s1\n")
    with pytest.raises(InputError, match="give each image its own id in the stimulus column"):
        read_image_manifest(manifest)
    os.mkfifo(tmp_path / "pipe.jpg")
    manifest.write_text("path,concept\npipe.jpg,cat\n")
    with pytest.raises(InputError, match=r"line 2: .*pipe.jpg is a named pipe"):
        read_image_manifest(manifest)


def test_check_key():
    assert check_key("  ice cream\t", "concept", "here") == "ice cream"
    with pytest.raises(
        InputError, match=r"^here: concept 'a\\nb' is not a valid id \(holds the control"
    ):
        check_key("a\nb", "concept", "here")


def test_manifest_links_keep_their_own_stem(tmp_path):
    store = _files(tmp_path / ".annex", "SHA256E-s631--9f2c.jpg")
    (tmp_path / "aardvark_01b.jpg").symlink_to(store / "SHA256E-s631--9f2c.jpg")
    (tmp_path / "n02084071_5_dog.jpg").symlink_to(store / "SHA256E-s631--9f2c.jpg")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,concept\naardvark_01b.jpg,aardvark\nn02084071_5_dog.jpg,n02084071\n")
    with pytest.raises(InputError, match="line 3: the path 'n02084071_5_dog.jpg' names the file"):
        read_image_manifest(manifest)
    manifest.write_text("path,concept\naardvark_01b.jpg,aardvark\n")
    (entry,) = read_image_manifest(manifest).entries
    assert (entry.stimulus, entry.path) == ("aardvark_01b", store / "SHA256E-s631--9f2c.jpg")


def test_image_names_mean_what_ingest_means():
    # ingest_images reads folders through image_layouts: one definition of an ImageNet name.
    assert images.FLAT_NAME is image_layouts.FLAT_NAME
    stem = "n02084071_1365_dog"
    assert images.wnid_of_file(f"photos/{stem}.jpg") == "n02084071"
    assert image_layouts.concept_from_name(stem) == ("n02084071", "dog", "")
    assert images.wnid_of_file("photos/aardvark_01b.jpg") is None
    assert image_layouts.concept_from_name("aardvark_01b") == ("aardvark", None, "")
