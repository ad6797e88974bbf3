"""Spaces and RDMs ingested at the image level: per-image files keyed by stimulus round-trip,
their concept means, content hashes of the per-image rows, and the refusals (unknown and
repeated stimuli, a level change without --replace)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

import semwh
from semwh import runs
from semwh.errors import ConfigError, DuplicateError, InputError
from semwh.ingest import ingest_rdm, ingest_space
from semwh.runs.comparison import rdm_stack
from semwh.runs.provenance import concepts_sha256
from semwh.runs.verify import verify
from semwh.vectors import content_sha256, load_space
from semwh.vectors.store import space_levels
from semwh.warehouse.models import Image, NoiseCeiling, Source, Space, VectorFile
from semwh.workflow.runfile import parse_config
from tests.factories import add_stimuli, noisy_rdms, warehouse_fixtures

CONCEPTS = ["ant", "bee", "cat", "dog", "eel", "fox"]
# Two images of each concept, stimulus ids <concept>_1 and <concept>_2.
IMAGE_CONCEPTS = sorted(CONCEPTS * 2)


def _build(wh):
    return [stimulus for _, stimulus in add_stimuli(wh, IMAGE_CONCEPTS)]


template, warehouse, stimuli = warehouse_fixtures(_build, "stimuli")


def _rows(wh, model) -> int:
    with wh.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)))


def _write_csv(path, keys, matrix) -> None:
    lines = ["stimulus," + ",".join(f"f{j}" for j in range(matrix.shape[1]))]
    for key, row in zip(keys, matrix, strict=True):
        lines.append(f"{key}," + ",".join(repr(float(v)) for v in row))
    path.write_text("\n".join(lines) + "\n")


def test_per_image_file_round_trips_with_its_concept_means(warehouse, stimuli, tmp_path):
    rng = np.random.default_rng(3)
    matrix = rng.standard_normal((len(stimuli), 5)).astype(np.float32)
    shuffled = rng.permutation(len(stimuli))
    csv_path, parquet_path = tmp_path / "roi.csv", tmp_path / "roi.parquet"
    _write_csv(csv_path, [stimuli[i] for i in shuffled], matrix[shuffled])
    pq.write_table(
        pa.table(
            {
                "stimulus": [stimuli[i] for i in shuffled[::-1]],
                # The lab's note of each image's concept (checked, not a feature).
                "concept": [stimuli[i].split("_")[0].upper() for i in shuffled[::-1]],
                "vector": pa.array(list(matrix[shuffled[::-1]]), pa.list_(pa.float32())),
            }
        ),
        parquet_path,
    )
    for name, path in (("roi_csv", csv_path), ("roi_parquet", parquet_path)):
        report = ingest_space(warehouse, name, path, level="image")
        assert (report.status, report.level, report.n_stimuli, report.n_concepts) == (
            "created",
            "image",
            12,
            6,
        )
        images = load_space(warehouse, name, "image")
        assert images.concept_ids == sorted(stimuli)
        assert images.item_concepts == tuple(IMAGE_CONCEPTS)
        np.testing.assert_array_equal(images.matrix, matrix.astype(np.float64))
        means = load_space(warehouse, name)
        assert means.concept_ids == CONCEPTS
        expected = matrix.astype(np.float64).reshape(6, 2, 5).mean(axis=1)
        np.testing.assert_allclose(means.matrix, expected, rtol=1e-6)
        with warehouse.session() as session:
            space = session.scalar(select(Space).where(Space.name == name))
            assert space_levels(session, space) == ("concept", "image")
            relpath = session.scalar(
                select(VectorFile.path).where(
                    VectorFile.space_id == space.space_id, VectorFile.kind == "images"
                )
            )
        # The stored file: rows in stimulus order, each with its image's id and concept.
        stored = pq.read_table(warehouse.vectors_root / relpath)
        assert stored.column("image_id").to_pylist() == list(range(1, 13))
        assert stored.column("concept").to_pylist() == IMAGE_CONCEPTS
        # The content is the per-image rows: the hash a reader of the image level gets.
        assert space.content_sha256 == content_sha256(images.concept_ids, images.matrix)
        assert ingest_space(warehouse, name, path, level="image").status == "unchanged"

    # Two images of one concept swapped: the concept means stay, the content does not.
    swapped = matrix.copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    _write_csv(csv_path, stimuli, swapped)
    report = ingest_space(warehouse, "roi_csv", csv_path, level="image")
    assert (report.status, report.version) == ("new version", 2)
    assert report.space.content_sha256 != space.content_sha256
    np.testing.assert_array_equal(load_space(warehouse, "roi_csv", "image").matrix[0], matrix[1])
    with warehouse.session() as session:
        files = session.scalars(
            select(VectorFile.kind).where(VectorFile.space_id == report.space.space_id)
        ).all()
    assert sorted(files) == ["concepts", "images"]  # the previous version's files replaced

    # A concept-level result over the concept means verifies against the stored content.
    row = runs.compare(warehouse, "roi_csv", "roi_parquet", "rsa", seed=1)
    assert verify(warehouse, result=f"rsa:{row.result_id}").ok


def test_image_rdm_round_trips_with_subjects_and_ceilings(warehouse, stimuli, tmp_path):
    rng = np.random.default_rng(4)
    stack = noisy_rdms(rng.standard_normal((len(stimuli), 3)), 3, seed=5)
    order = rng.permutation(len(stimuli))
    np.save(tmp_path / "rdm.npy", stack[:, order][:, :, order])
    (tmp_path / "keys.txt").write_text("\n".join(stimuli[i] for i in order) + "\n")
    report = ingest_rdm(
        warehouse, "behaviour", tmp_path / "rdm.npy", keys=tmp_path / "keys.txt", level="image"
    )
    assert (report.level, report.n_stimuli, report.n_concepts, report.n_subjects) == (
        "image",
        12,
        6,
        3,
    )
    loaded = load_space(warehouse, "behaviour", "image")
    assert (loaded.kind, loaded.subjects) == ("rdm", ("1", "2", "3"))
    assert loaded.concept_ids == sorted(stimuli)
    assert loaded.item_concepts == tuple(IMAGE_CONCEPTS)
    np.testing.assert_allclose(rdm_stack(loaded, loaded.concept_ids), stack, rtol=1e-6)
    with warehouse.session() as session:
        digests = set(session.scalars(select(NoiseCeiling.concepts_sha256)).all())
    assert digests == {concepts_sha256(sorted(stimuli))}
    # The same matrices in long CSV form, named subjects: the same content.
    records: dict[str, list] = {"subject": [], "stimulus": []}
    records.update({stimuli[c]: [] for c in order})
    for s in range(3):
        for r in order:
            records["subject"].append(f"s{s}")
            records["stimulus"].append(stimuli[r])
            for c in order:
                records[stimuli[c]].append(float(stack[s, r, c]))
    pacsv.write_csv(pa.table(records), tmp_path / "rdm.csv")
    ingest_rdm(warehouse, "behaviour_csv", tmp_path / "rdm.csv", level="image")
    again = load_space(warehouse, "behaviour_csv", "image")
    assert again.subjects == ("s0", "s1", "s2")
    np.testing.assert_array_equal(again.matrix, loaded.matrix)
    # Between stimuli only: no concept level, and the reader says how to compare it.
    with pytest.raises(ConfigError, match="has no concept level: compare it with --level image"):
        load_space(warehouse, "behaviour")
    # Unchanged: a no-op; changed: needs replace, as for a concept-level RDM.
    before = _rows(warehouse, VectorFile)
    ingest_rdm(
        warehouse, "behaviour", tmp_path / "rdm.npy", keys=tmp_path / "keys.txt", level="image"
    )
    assert _rows(warehouse, VectorFile) == before
    np.save(tmp_path / "rdm.npy", 2 * stack[:, order][:, :, order])
    with pytest.raises(DuplicateError, match="--replace"):
        ingest_rdm(
            warehouse, "behaviour", tmp_path / "rdm.npy", keys=tmp_path / "keys.txt", level="image"
        )


def test_unknown_stimuli_are_listed_with_nearest_ids_and_nothing_is_stored(
    warehouse, stimuli, tmp_path
):
    keys = [*stimuli[:10], "cat_3", "dgo_1"]
    _write_csv(tmp_path / "roi.csv", keys, np.ones((12, 2)) + np.eye(12, 2))
    counts = [_rows(warehouse, m) for m in (Space, VectorFile, Source)]
    with pytest.raises(InputError) as err:
        ingest_space(warehouse, "roi", tmp_path / "roi.csv", level="image")
    message = str(err.value)
    assert message.startswith(f"space file {tmp_path / 'roi.csv'}: 2 unknown stimulus ids")
    assert f"'cat_3' at {tmp_path / 'roi.csv'} line 12 (nearest: 'cat_2', 'cat_1'" in message
    assert f"'dgo_1' at {tmp_path / 'roi.csv'} line 13 (nearest: 'dog_1'" in message
    assert "\n" not in message
    np.save(tmp_path / "rdm.npy", noisy_rdms(np.eye(12, 3), 1, seed=1))
    (tmp_path / "keys.txt").write_text("\n".join(keys) + "\n")
    with pytest.raises(InputError, match=r"'dgo_1' at .*keys.txt line 12 \(nearest: 'dog_1'"):
        ingest_rdm(
            warehouse, "rdm", tmp_path / "rdm.npy", keys=tmp_path / "keys.txt", level="image"
        )
    assert [_rows(warehouse, m) for m in (Space, VectorFile, Source)] == counts


def test_duplicate_stimuli_are_refused_naming_both_lines(warehouse, stimuli, tmp_path):
    keys = [*stimuli[:5], stimuli[1]]
    _write_csv(tmp_path / "roi.csv", keys, np.arange(12.0).reshape(6, 2))
    path = tmp_path / "roi.csv"
    with pytest.raises(
        InputError,
        match=f"^{path} line 7: stimulus 'ant_2' appears again \\(first at {path} line 3\\)",
    ):
        ingest_space(warehouse, "roi", path, level="image")
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("\n".join([*stimuli[:4], "", stimuli[2]]) + "\n")
    np.save(tmp_path / "rdm.npy", noisy_rdms(np.eye(5, 3), 1, seed=1))
    with pytest.raises(
        InputError,
        match=f"^{keys_file} line 6: stimulus id 'bee_1' appears again \\(first at "
        f"{keys_file} line 3\\)",
    ):
        ingest_rdm(warehouse, "rdm", tmp_path / "rdm.npy", keys=keys_file, level="image")
    stack = noisy_rdms(np.eye(4, 3), 1, seed=1)[0]
    rows = [stimuli[0], stimuli[1], stimuli[2], stimuli[1]]  # ant_2 twice
    table = {"stimulus": rows, **{s: list(stack[:, i]) for i, s in enumerate(stimuli[:3])}}
    pacsv.write_csv(pa.table(table), tmp_path / "rdm.csv")
    with pytest.raises(InputError, match=r"duplicate row for stimulus ant_2 \(line 3 and line 5\)"):
        ingest_rdm(warehouse, "rdm", tmp_path / "rdm.csv", level="image")
    assert _rows(warehouse, Space) == 0


def test_a_level_change_needs_replace(warehouse, stimuli, tmp_path):
    (tmp_path / "means.csv").write_text(
        "concept,x,y\n" + "".join(f"{c},{i},{i * i % 5}\n" for i, c in enumerate(CONCEPTS))
    )
    _write_csv(tmp_path / "roi.csv", stimuli, np.arange(24.0).reshape(12, 2) % 7)
    ingest_space(warehouse, "roi", tmp_path / "means.csv")
    with pytest.raises(
        DuplicateError,
        match=r"space 'roi' is registered at the concept level .* pass replace=True \(--replace\)",
    ):
        ingest_space(warehouse, "roi", tmp_path / "roi.csv", level="image")
    api = semwh.open(warehouse.root)  # the Python API passes the level on
    api.ingest_space("roi", tmp_path / "roi.csv", level="image", replace=True)
    assert api.space("roi", level="image").concept_ids == sorted(stimuli)
    with pytest.raises(DuplicateError, match="registered at the image level"):
        ingest_space(warehouse, "roi", tmp_path / "means.csv")
    ingest_space(warehouse, "roi", tmp_path / "means.csv", replace=True)
    with warehouse.session() as session:
        space = session.scalar(select(Space).where(Space.name == "roi"))
        assert space_levels(session, space) == ("concept",)  # the per-image rows went


def test_run_files_declare_the_level(warehouse, stimuli, tmp_path):
    from semwh.workflow.stages import rdm_stage, space_stage

    base = {"images": {"folder": "img"}, "models": [{"name": "m"}]}
    spaces = [{"name": "roi", "file": "roi.csv", "level": "image"}]
    rdms = [{"name": "b", "file": "b.npy", "keys": "b.txt", "level": "image", "sweep": False}]
    config = parse_config({**base, "spaces": spaces, "rdms": rdms}, tmp_path, "run.toml")
    assert (config.spaces[0].level, config.rdms[0].level) == ("image", "image")
    _write_csv(tmp_path / "roi.csv", stimuli, np.arange(24.0).reshape(12, 2) % 7)
    np.save(tmp_path / "b.npy", noisy_rdms(np.eye(12, 3), 2, seed=1))
    (tmp_path / "b.txt").write_text("\n".join(stimuli))
    assert space_stage(warehouse, config.spaces[0]).detail.startswith("12 stimuli of 6 concepts")
    assert rdm_stage(warehouse, config.rdms[0]).detail.startswith("12 stimuli of 6 concepts")
    assert load_space(warehouse, "b", "image").subjects == ("1", "2")
    swept = {**base, "rdms": [{**rdms[0], "sweep": True}]}
    with pytest.raises(ConfigError, match=r'\[\[rdms\]\] b level = "image" .* sweep = false'):
        parse_config(swept, tmp_path, "run.toml")
    # Swept at the image level, an RDM between stimuli is a target like any other.
    at_image = {**swept, "analysis": {"level": "image", "permute": "within-concept"}}
    items = parse_config(at_image, tmp_path, "run.toml").analysis.items()
    assert (items.level, items.permute) == ("image", "within-concept")
    with pytest.raises(ConfigError, match=r"run.toml: \[analysis\] unknown permutation"):
        parse_config({**at_image, "analysis": {"permute": "stimuli"}}, tmp_path, "run.toml")
    with pytest.raises(ConfigError, match=r'\[\[spaces\]\] roi level = "images" is not a level'):
        parse_config({**base, "spaces": [{**spaces[0], "level": "images"}]}, tmp_path, "run.toml")


def test_a_damaged_per_image_file_is_repaired_by_ingesting_again(warehouse, stimuli, tmp_path):
    from semwh.runs.repair import repair

    _write_csv(tmp_path / "roi.csv", stimuli, np.arange(24.0).reshape(12, 2) % 7)
    report = ingest_space(warehouse, "roi", tmp_path / "roi.csv", level="image")
    with warehouse.session() as session:
        path = session.scalar(
            select(VectorFile.path).where(
                VectorFile.space_id == report.space.space_id, VectorFile.kind == "images"
            )
        )
    (warehouse.vectors_root / path).write_bytes(b"not parquet")
    # (The factory's images have no files: only the vector file counts here.)
    (damage,) = [d for d in repair(warehouse).damage if d.what == "vector file"]
    assert damage.repair.startswith("space 'roi': run the command that ingested 'roi' again")
    again = ingest_space(warehouse, "roi", tmp_path / "roi.csv", level="image")
    assert again.status == "repaired"
    assert load_space(warehouse, "roi", "image").concept_ids == sorted(stimuli)


def test_a_new_version_from_memory_drops_the_per_image_rows(warehouse, stimuli, tmp_path):
    _write_csv(tmp_path / "roi.csv", stimuli, np.arange(24.0).reshape(12, 2) % 7)
    ingest_space(warehouse, "roi", tmp_path / "roi.csv", level="image")
    semwh.open(warehouse.root).add_space("roi", CONCEPTS, np.eye(6, 3), replace=True)
    with pytest.raises(ConfigError, match="has no image level"):
        load_space(warehouse, "roi", "image")


def test_downgrade_below_0010_removes_image_rdms_and_upgrades_again(warehouse, stimuli, tmp_path):
    """An RDM between stimuli has no concept level: the downgrade removes its space row,
    its file and its noise ceilings (on DuckDB, which refuses to delete a row whose
    referencing rows went in the same transaction), and keeps a concept-level RDM."""
    from semwh.warehouse.migrate import confirm_downgrade, downgrade, head_revision, upgrade

    rng = np.random.default_rng(9)
    np.save(tmp_path / "rdm.npy", noisy_rdms(rng.standard_normal((12, 3)), 2, seed=1))
    (tmp_path / "keys.txt").write_text("\n".join(stimuli) + "\n")
    ingest_rdm(warehouse, "images", tmp_path / "rdm.npy", keys=tmp_path / "keys.txt", level="image")
    np.save(tmp_path / "concepts.npy", noisy_rdms(rng.standard_normal((6, 3)), 2, seed=2))
    (tmp_path / "concepts.txt").write_text("\n".join(CONCEPTS) + "\n")
    ingest_rdm(warehouse, "concepts", tmp_path / "concepts.npy", keys=tmp_path / "concepts.txt")
    drops = confirm_downgrade(warehouse, "0009", confirmed=True)
    assert drops["spaces: image-level RDMs (no concept level)"] == 1
    assert drops["noise_ceilings: of image-level RDMs"] == 2
    assert downgrade(warehouse, "0009") == "0009"
    with warehouse.session() as session:
        assert session.scalars(select(Space.name)).all() == ["concepts"]
        assert set(session.scalars(select(NoiseCeiling.space)).all()) == {"concepts"}
    assert upgrade(warehouse) == head_revision()
    assert load_space(warehouse, "concepts").concept_ids == CONCEPTS


def test_stimulus_ids_in_decomposed_unicode_match_as_written_and_composed(warehouse, tmp_path):
    """Images ingested from a folder keep their file stems as stimulus ids, in decomposed
    Unicode where macOS wrote them so: a file keyed by those ids as the registry holds them
    (say, exported from it) or in composed form names the same images."""
    import unicodedata

    decomposed = unicodedata.normalize("NFD", "café_")
    images = add_stimuli(warehouse, ["ant", "ant", "bee", "bee", "cat", "cat"], decomposed)
    ids = [stimulus for _, stimulus in images]
    matrix = np.arange(12.0).reshape(6, 2) ** 1.5
    _write_csv(tmp_path / "as_written.csv", ids, matrix)
    composed = [unicodedata.normalize("NFC", s) for s in ids]
    _write_csv(tmp_path / "composed.csv", composed, matrix)
    for name in ("as_written", "composed"):
        ingest_space(warehouse, name, tmp_path / f"{name}.csv", level="image")
        loaded = load_space(warehouse, name, "image")
        assert loaded.concept_ids == sorted(ids)
        np.testing.assert_allclose(loaded.matrix, matrix[np.argsort(ids)])


def test_a_concept_column_that_disagrees_with_the_registry_is_refused(warehouse, stimuli, tmp_path):
    """A lab's concept column that names another concept than the registry's for a stimulus
    (ids of another numbering of the images) stores nothing; names and ids in any case
    agree."""
    matrix = np.arange(24.0).reshape(12, 2) ** 1.5
    shifted = stimuli[1:] + stimuli[:1]  # each row names the next image
    for name, noted in (("agree", IMAGE_CONCEPTS), ("shifted", [s.split("_")[0] for s in shifted])):
        lines = ["stimulus,concept,f0,f1"]
        for key, concept, row in zip(stimuli, noted, matrix, strict=True):
            lines.append(f"{key}, {concept.upper()} ,{row[0]},{row[1]}")
        (tmp_path / f"{name}.csv").write_text("\n".join(lines) + "\n")
        table = pa.table({"stimulus": stimuli, "concept": noted, "f0": matrix[:, 0]})
        pq.write_table(table, tmp_path / f"{name}.parquet")
    for suffix in ("csv", "parquet"):
        ingest_space(warehouse, f"agree_{suffix}", tmp_path / f"agree.{suffix}", level="image")
        before = _rows(warehouse, Space)
        with pytest.raises(InputError, match=r"concept column disagrees .* for 6 of 12 stimuli"):
            ingest_space(warehouse, "shifted", tmp_path / f"shifted.{suffix}", level="image")
        assert _rows(warehouse, Space) == before


def test_an_image_id_column_is_checked_and_never_a_feature(warehouse, stimuli, tmp_path):
    """A per-image file exported from the warehouse keeps its image_id column: the ids are
    checked against the registry's, never taken as a feature."""
    with warehouse.session() as session:
        ids = dict(session.execute(select(Image.stimulus, Image.image_id)).tuples().all())
    matrix = np.arange(24.0).reshape(12, 2) ** 1.5
    lines = ["stimulus,image_id,f0,f1"]
    for key, row in zip(stimuli, matrix, strict=True):
        lines.append(f"{key},{ids[key]},{row[0]},{row[1]}")
    (tmp_path / "ids.csv").write_text("\n".join(lines) + "\n")
    ingest_space(warehouse, "ids", tmp_path / "ids.csv", level="image")
    loaded = load_space(warehouse, "ids", "image")
    assert loaded.matrix.shape == (12, 2)
    np.testing.assert_allclose(loaded.matrix, matrix[np.argsort(stimuli)], rtol=1e-6)
    wrong = [stimuli[0], *stimuli[2:], stimuli[1]]  # rows 2 to 12 name another image
    table = pa.table({"stimulus": stimuli, "image_id": [ids[s] for s in wrong], "f0": matrix[:, 0]})
    pq.write_table(table, tmp_path / "wrong.parquet")
    with pytest.raises(InputError, match=r"image_id column disagrees .* for 11 of 12 stimuli"):
        ingest_space(warehouse, "wrong", tmp_path / "wrong.parquet", level="image")
