"""Every file is checked before its numbers are used, and damaged files can be repaired.

A small real warehouse (5 concepts x 2 real photos, a tiny network's per-image shards and
concept means, an external space ingested from CSV) is damaged the way a careless user or a
failing disk would: a vector file truncated, emptied or with one bit flipped (same size), a
photo replaced or deleted after ingest, the same photo under two concepts. Each case must be
refused in one line that names the file and the command that repairs it, never answered
with fewer rows or with numbers from other bytes; `semwh repair` and the ordinary commands
then bring the warehouse back to files that match their records.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select, update

from semwh.errors import InputError, VectorFileError
from semwh.extract import ExtractionOptions, run_extraction
from semwh.ingest import ingest_images
from semwh.ingest.spaces import ingest_space
from semwh.results.named import run_query
from semwh.runs import compare
from semwh.runs.verify import verify
from semwh.vectors import load_image_vectors, load_space
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import Image, ResultRSA, Source, VectorFile
from semwh.warehouse.readonly import run_sql
from tests.conftest import run_cli
from tests.reliability.conftest import init_wh, open_wh, sample_folder

pytestmark = [pytest.mark.integration]

TINY = dict(
    model="module:tests.integration.vision_modules:tiny_net",
    preprocessing="imagenet,resize=40,crop=32",
    layers="stem,head",
    shard_size=4,
    batch_size=4,
    device="cpu",
    num_workers=0,
)


def _extract(wh: Warehouse, **changes: object):  # noqa: ANN202
    return run_extraction(wh, ExtractionOptions(**{**TINY, **changes}))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, samples_dir: Path) -> Path:
    """A folder holding the warehouse ``wh`` and the photos ``images`` it was ingested from."""
    base = tmp_path_factory.mktemp("integrity")
    links = sample_folder(samples_dir, base / "links", 5, 2)
    images = base / "images"
    images.mkdir()
    for path in sorted(links.iterdir()):
        shutil.copyfile(path, images / path.name)  # real files: tests replace and delete them
    wh = init_wh(base / "wh")
    ingest_images(wh, images, wordnet=False)
    assert _extract(wh).status == "done"
    wnids = sorted({p.name.split("_")[0] for p in images.iterdir()})
    rng = np.random.default_rng(0)
    rows = ["wnid," + ",".join(f"f{i}" for i in range(6))]
    rows += [w + "," + ",".join(f"{v:.5f}" for v in rng.normal(size=6)) for w in wnids]
    (base / "ext.csv").write_text("\n".join(rows) + "\n")
    ingest_space(wh, "ext", base / "ext.csv")
    wh.dispose()
    return base


def _copy(site: Path, dest: Path) -> tuple[Warehouse, Path]:
    """A private copy of the site whose images point at the copy's photos."""
    shutil.copytree(site, dest, symlinks=True)
    wh = open_wh(dest / "wh")
    with wh.session() as session:
        session.execute(update(Image).values(path=func.replace(Image.path, str(site), str(dest))))
        session.execute(update(Source).values(path=func.replace(Source.path, str(site), str(dest))))
    return wh, dest / "images"


def _file(wh: Warehouse, kind: str, space: str | None = None, layer: str | None = None) -> Path:
    """A registered vector file: a space's concept file, or the first shard of a layer."""
    with wh.session() as session:
        query = select(VectorFile.path).where(VectorFile.kind == kind)
        rel = [
            r
            for r in session.scalars(query.order_by(VectorFile.file_id)).all()
            if (space is None or f"space={space}/" in r)
            and (layer is None or f"layer={layer}/" in r)
        ][0]
    return wh.vectors_root / rel


def _flip_one_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize("damage", ["truncated", "emptied"])
def test_filtered_reads_of_a_damaged_file_fail_like_unfiltered(
    site: Path, tmp_path: Path, damage: str
) -> None:
    wh, _ = _copy(site, tmp_path / "site")
    path = _file(wh, "concepts", space="ext")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"")
    concept = load_space(wh, "tiny_net/head").concept_ids[0]
    statements = [
        "SELECT count(*) FROM vectors",
        "SELECT count(*) FROM vectors WHERE space = 'ext'",
        f"SELECT count(*) FROM vectors WHERE concept = '{concept}'",
        "SELECT space FROM vectors WHERE image_id IS NULL LIMIT 1",
    ]
    for sql in statements:
        with pytest.raises(Exception, match=rf"{path.name}.*semwh repair") as caught:
            run_sql(wh, sql)
        assert "\n" not in str(caught.value), sql
    with pytest.raises(Exception, match=rf"{path.name}.*semwh repair"):
        run_query(wh, "space_vectors", {"space": "ext"})
    # The registry tables stay readable.
    assert run_sql(wh, "SELECT count(*) FROM spaces").rows() == [(3,)]


def test_cli_query_and_export_over_a_damaged_file_fail_in_one_line(
    site: Path, tmp_path: Path
) -> None:
    wh, _ = _copy(site, tmp_path / "site")
    path = _file(wh, "concepts", space="ext")
    path.write_bytes(b"")
    root = str(wh.root)
    proc = run_cli("--warehouse", root, "query", "space_vectors", "-p", "space=ext", check=False)
    assert proc.returncode == 1
    assert path.name in _one_error_line(proc.stderr)
    out = tmp_path / "vectors.parquet"
    proc = run_cli("--warehouse", root, "export", "vectors", str(out), check=False)
    assert proc.returncode == 1
    line = _one_error_line(proc.stderr)
    assert path.name in line and "semwh repair" in line
    assert not out.exists()


def test_a_same_size_bit_flip_is_refused_before_any_result_is_stored(
    site: Path, tmp_path: Path
) -> None:
    wh, _ = _copy(site, tmp_path / "site")
    path = _file(wh, "concepts", space="ext")
    size = path.stat().st_size
    _flip_one_bit(path)
    assert path.stat().st_size == size
    with pytest.raises(VectorFileError, match=rf"{path.name}.*SHA-256.*semwh repair"):
        load_space(wh, "ext")
    with pytest.raises(VectorFileError, match=path.name):
        compare(wh, "tiny_net/head", "ext", "rsa", permutations=10, seed=1)
    with wh.session() as session:
        assert session.scalar(select(func.count()).select_from(ResultRSA)) == 0
    shard = _file(wh, "images", layer="head")
    _flip_one_bit(shard)
    with pytest.raises(VectorFileError, match=rf"{shard.name}.*semwh repair"):
        load_image_vectors(wh, "tiny_net/head")


def test_a_replaced_or_deleted_photo_is_refused_and_reingest_takes_the_disk_as_it_is(
    site: Path, tmp_path: Path
) -> None:
    wh, images = _copy(site, tmp_path / "site")
    photos = sorted(images.iterdir())
    replaced, deleted = photos[0], photos[3]
    with PILImage.open(replaced) as img:
        img.convert("RGB").save(replaced, format="JPEG", quality=60)  # other bytes, same name
    deleted.unlink()
    # A new extraction (another layer set) must not read the replaced photo's new bytes.
    with pytest.raises(InputError) as caught:
        _extract(wh, layers="head", name="tiny_head")
    message = str(caught.value)
    assert str(replaced) in message and "changed on disk" in message, message
    assert "and 1 more" in message and f"semwh ingest images {images}" in message
    report = ingest_images(wh, images, wordnet=False)
    assert sorted(report.removed) == [
        (str(replaced), "changed on disk"),
        (str(deleted), "gone from disk"),
    ]
    assert report.added == 1
    with wh.session() as session:
        paths = set(session.scalars(select(Image.path)).all())
    assert str(deleted) not in paths and str(replaced) in paths and len(paths) == 9
    assert _extract(wh, layers="head", name="tiny_head").status == "done"
    # Deleted alone: one clear line naming the photo.
    photos[5].unlink()
    with pytest.raises(InputError, match=rf"{photos[5].name}.*missing from disk"):
        _extract(wh, layers="stem", name="tiny_stem")


def test_the_same_photo_under_two_concepts_is_refused_and_reported(
    samples_dir: Path, tmp_path: Path
) -> None:
    photos = sorted(samples_dir.glob("*.jpg"))
    a, b = photos[0].name.split("_")[0], photos[10].name.split("_")[0]
    assert a != b
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copyfile(photos[0], folder / f"{a}_1.jpg")
    shutil.copyfile(photos[0], folder / f"{b}_1.jpg")  # the same bytes under concept b
    shutil.copyfile(photos[10], folder / f"{b}_2.jpg")
    root = tmp_path / "wh"
    init_wh(root)
    proc = run_cli("--warehouse", str(root), "ingest", "images", str(folder), "--no-wordnet")
    assert "1 added" in proc.stdout and "2 refused of 3 found" in proc.stdout, proc.stdout
    assert "same photo" in proc.stderr and a in proc.stderr and b in proc.stderr
    wh = open_wh(root)
    with wh.session() as session:
        assert session.execute(select(Image.concept)).scalars().all() == [b]
    # Registered under a, given again under b: refused, naming both concepts.
    other = tmp_path / "more"
    other.mkdir()
    shutil.copyfile(photos[0], other / f"{a}_1.jpg")
    assert ingest_images(wh, other, wordnet=False).added == 1
    again = tmp_path / "again"
    again.mkdir()
    shutil.copyfile(photos[0], again / f"{b}_9.jpg")
    report = ingest_images(wh, again, wordnet=False)
    assert report.added == 0 and len(report.conflicts) == 1
    assert a in report.conflicts[0][1] and b in report.conflicts[0][1]


def test_verify_all_reports_damage_with_its_repair_and_reads_only(
    site: Path, tmp_path: Path
) -> None:
    wh, _ = _copy(site, tmp_path / "site")
    root = str(wh.root)
    shard = _file(wh, "images", layer="stem")
    shard.write_bytes(b"")
    proc = run_cli("--warehouse", root, "verify", "--all", check=False)
    assert proc.returncode == 1
    assert shard.name in proc.stderr and "semwh repair" in proc.stderr, proc.stderr
    # An archived warehouse: a read-only mount (where mounting is allowed).
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "--bind", root, str(mount)], capture_output=True).returncode:
        pytest.skip("cannot bind-mount here; needs root")
    try:
        ro = subprocess.run(["mount", "-o", "remount,bind,ro", str(mount)], capture_output=True)
        if ro.returncode:
            pytest.skip("cannot remount read-only")
        proc = run_cli("--warehouse", str(mount), "verify", "--all", check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert shard.name in proc.stderr and "semwh repair" in proc.stderr, proc.stderr
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_repair_rebuilds_what_it_can_and_the_usual_commands_the_rest(
    site: Path, tmp_path: Path
) -> None:
    from semwh.runs.repair import REBUILT, RELEASED, repair

    wh, _ = _copy(site, tmp_path / "site")
    head = load_space(wh, "tiny_net/head").matrix
    shard = _file(wh, "images", layer="stem")
    shard.write_bytes(b"")
    ext = _file(wh, "concepts", space="ext")
    _flip_one_bit(ext)
    assert not verify(wh, every=True).ok
    # A finished extraction over a damaged shard is not "unchanged": it points to repair.
    with pytest.raises(VectorFileError, match=rf"{shard.name}.*semwh repair"):
        _extract(wh)
    report = repair(wh)
    status = {d.path: d.status for d in report.damage}
    assert status[str(shard)] == RELEASED and not report.ok
    assert "semwh extract" in next(d.repair for d in report.damage if d.path == str(shard))
    ext_damage = next(d for d in report.damage if d.path == str(ext))
    assert str(site / "ext.csv").replace(str(site), str(tmp_path / "site")) in ext_damage.repair
    # The same commands as before rebuild the rest.
    assert _extract(wh).status == "done"
    assert ingest_space(wh, "ext", tmp_path / "site" / "ext.csv").status == "repaired"
    assert verify(wh, every=True).ok
    assert np.array_equal(load_space(wh, "tiny_net/head").matrix, head)
    # A layer space's own file is rebuilt by repair alone, from its intact shards.
    concepts = _file(wh, "concepts", space="tiny_net%2Fhead")
    _flip_one_bit(concepts)
    report = repair(wh)
    assert [d.status for d in report.damage] == [REBUILT] and report.ok
    assert np.array_equal(load_space(wh, "tiny_net/head").matrix, head)
