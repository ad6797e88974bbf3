"""The ray backend against the local one on real images: same rows, same sweep numbers, resume.

One local Ray (2 CPUs, the small footprint semwh starts by default) serves the whole module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from sqlalchemy import func, select

from semwh.errors import WarehouseBusyError
from semwh.extract import ExtractionOptions, run_extraction
from semwh.vectors import load_space, save_space
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import (
    AnalysisRun,
    ExtractionRun,
    ExtractionShard,
    Prediction,
    Result2v2,
    ResultRSA,
    Sweep,
    SweepMember,
    VectorFile,
    VisionModel,
)
from tests.conftest import copy_warehouse, semwh_bin
from tests.factories import add_subject_rdms
from tests.integration.realdata import (
    N_CONCEPTS,
    PER_CONCEPT,
    glove_space,
    image_rows,
    new_warehouse,
    sample_files,
)
from tests.s3server import S3Server

pytestmark = pytest.mark.integration
ray = pytest.importorskip("ray", reason="the ray backend tests need Ray: pip install 'semwh[ray]'")

from semwh.ray import sweep_mapper  # noqa: E402
from semwh.ray.extract import run_extraction_ray  # noqa: E402
from semwh.ray.session import ray_session  # noqa: E402

MODEL = "efficientnet_lite0"
LAYERS = "blocks.2,blocks.9,head"
BATCH, SHARD = 4, 8
REL_TOL = 1e-5


def extract_kwargs() -> dict:
    return {"layers": LAYERS, "batch_size": BATCH, "shard_size": SHARD}


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray for the module, started the way semwh starts it by default."""
    with ray_session() as started:
        yield started.get_runtime_context().gcs_address


@pytest.fixture(scope="module")
def files(samples_dir: Path) -> list[Path]:
    return sample_files(samples_dir)


@pytest.fixture(scope="module")
def local_wh(tmp_path_factory: pytest.TempPathFactory, files: list[Path]) -> Warehouse:
    wh = new_warehouse(tmp_path_factory.mktemp("local") / "wh", files)
    summary = run_extraction(
        wh, ExtractionOptions(MODEL, device="cpu", num_workers=0, **extract_kwargs())
    )
    assert summary.status == "done"
    return wh


@pytest.fixture(scope="module")
def ray_wh(tmp_path_factory: pytest.TempPathFactory, files: list[Path], ray_cluster: str):
    wh = new_warehouse(tmp_path_factory.mktemp("ray") / "wh", files)
    summary = run_extraction_ray(wh, ExtractionOptions(MODEL, **extract_kwargs()))
    return wh, summary


def predictions(wh: Warehouse) -> list[tuple]:
    with wh.session() as session:
        rows = session.execute(
            select(
                Prediction.image_id,
                Prediction.rank,
                Prediction.wnid,
                Prediction.class_index,
                Prediction.probability,
            ).order_by(Prediction.image_id, Prediction.rank)
        ).all()
    return [tuple(row) for row in rows]


def assert_same_rows(ray_side: Warehouse, local: Warehouse) -> None:
    """Same image ids, wnids and predictions; vectors equal within fp32 tolerance."""
    for layer in LAYERS.split(","):
        ids_r, wnids_r, vec_r = image_rows(ray_side, f"{MODEL}/{layer}")
        ids_l, wnids_l, vec_l = image_rows(local, f"{MODEL}/{layer}")
        assert ids_r.tolist() == ids_l.tolist() and len(ids_l) == N_CONCEPTS * PER_CONCEPT
        assert wnids_r == wnids_l
        assert vec_r.dtype == np.float32 and vec_r.shape == vec_l.shape
        scale = np.abs(vec_l).max()
        assert scale > 0
        assert np.abs(vec_r - vec_l).max() <= REL_TOL * scale, layer
    pred_r, pred_l = predictions(ray_side), predictions(local)
    assert len(pred_l) == N_CONCEPTS * PER_CONCEPT * 5
    assert [p[:4] for p in pred_r] == [p[:4] for p in pred_l]
    np.testing.assert_allclose(
        [p[4] for p in pred_r], [p[4] for p in pred_l], rtol=REL_TOL, atol=1e-7
    )


def test_ray_extraction_matches_local_rows(ray_wh, local_wh: Warehouse) -> None:
    wh, summary = ray_wh
    assert summary.status == "done" and summary.shards_done == 3 and summary.images == 20
    assert_same_rows(wh, local_wh)
    # Same job identity: the ray run is the local run, so either backend resumes the other's.
    with wh.session() as s_ray, local_wh.session() as s_local:
        run_r, run_l = s_ray.scalar(select(ExtractionRun)), s_local.scalar(select(ExtractionRun))
        assert run_r.params_sha256 == run_l.params_sha256 and run_r.status == "done"
        assert s_ray.scalar(select(func.count()).select_from(ExtractionShard)) == 3
        files = s_ray.scalars(select(VectorFile.path).where(VectorFile.kind == "images")).all()
    assert len(files) == 3 * 3
    # Every shard file is a complete Parquet file under the vectors root, nothing left in tmp.
    for rel in files:
        table = pq.read_table(wh.vectors_root / rel)
        assert table.column_names[:4] == ["space", "concept", "image_id", "vector"]
    assert not list(wh.tmp_root.glob("*.tmp")) if wh.tmp_root.exists() else True
    # Concept means (the layer spaces) agree as well.
    for layer in LAYERS.split(","):
        a, b = load_space(wh, f"{MODEL}/{layer}"), load_space(local_wh, f"{MODEL}/{layer}")
        assert a.concept_ids == b.concept_ids and len(a.concept_ids) == N_CONCEPTS
        assert np.abs(a.matrix - b.matrix).max() <= REL_TOL * np.abs(b.matrix).max()


def test_ray_extraction_to_an_object_store_matches_local_rows(
    tmp_path: Path, files: list[Path], local_wh: Warehouse, ray_cluster: str, s3_server: S3Server
) -> None:
    """Shards land in S3 (uploaded by the driver, registered after), rows equal local ones."""
    s3_server.create_bucket("ray-vectors")
    wh = new_warehouse(tmp_path / "wh", files, vectors=s3_server.uri("ray-vectors", "wh"))
    summary = run_extraction_ray(wh, ExtractionOptions(MODEL, **extract_kwargs()))
    assert summary.status == "done" and summary.shards_done == 3
    assert_same_rows(wh, local_wh)
    with wh.session() as session:
        files_ = dict(session.execute(select(VectorFile.path, VectorFile.size_bytes)).all())
    assert s3_server.objects("ray-vectors", "wh") == files_
    assert not (wh.root / "vectors").exists()


def test_ray_extraction_again_is_unchanged(ray_wh) -> None:
    wh, _ = ray_wh
    again = run_extraction_ray(wh, ExtractionOptions(MODEL, **extract_kwargs()))
    assert again.status == "unchanged" and again.images == 0


def sweep_numbers(wh: Warehouse, result) -> list[tuple]:
    """Every stored number of a sweep's rows, null distributions included."""
    from semwh.runs.result_rows import null_values

    out = []
    with wh.session() as session:
        for row in result.rows:
            test = "rsa" if hasattr(row, "rho") else "2v2"
            stat = row.rho if test == "rsa" else row.accuracy
            null = null_values(session, test, row.result_id)
            p_fdr = result.p_fdr[(test, row.result_id)]
            out.append(
                (test, row.space_a, row.space_b, row.n_concepts, row.seed, stat, row.p_value,
                 p_fdr, tuple(null or ()))
            )  # fmt: skip
    return sorted(out)


SWEEP = {"tests": ("2v2", "rsa"), "permutations": 200, "seed": 7, "include_random": False}


@pytest.fixture(scope="module")
def local_sweep(local_wh: Warehouse, files) -> tuple[Warehouse, object, list[tuple]]:
    """The local backend's sweep of the three layers against GloVe, and its stored numbers."""
    from semwh.runs import sweep

    glove_space(local_wh, files)
    local = sweep(local_wh, [MODEL], ["glove"], **SWEEP)
    assert local.computed == 6
    return local_wh, local, sweep_numbers(local_wh, local)


@pytest.mark.parametrize(
    ("perm_block", "null_blocks"),
    [(None, 0), (64, 6 * 4)],
    ids=["whole comparisons", "permutation blocks"],
)
def test_ray_sweep_matches_local_exactly(
    local_sweep, ray_cluster, perm_block: int | None, null_blocks: int
) -> None:
    """Whole comparisons (200 permutations fit one block of the default 250), or each null
    split into blocks 0..64, 64..128, 128..192, 192..200: the same stored rows, bit for bit."""
    from semwh.runs import sweep

    wh, local, expected = local_sweep
    mapper = sweep_mapper("ray", perm_block=perm_block)
    distributed = sweep(wh, [MODEL], ["glove"], force=True, mapper=mapper, **SWEEP)
    assert mapper.submitted == {"comparisons": 6, "null_blocks": null_blocks}
    assert distributed.computed == 6 and distributed.seed == local.seed == 7
    assert {r.result_id for r in distributed.rows}.isdisjoint(r.result_id for r in local.rows)
    got = sweep_numbers(wh, distributed)
    assert got == expected  # exact: floats, p-values, FDR and nulls
    assert all(len(n[-1]) == 200 for n in got) and any(n[6] < 0.5 for n in got)


def test_ray_sweep_against_an_rdm_with_subjects_matches_local_exactly(
    local_sweep, ray_cluster, tmp_path: Path
) -> None:
    """A target with subjects through Ray's permutation blocks: the same means over
    subjects, nulls, per-subject values and ceilings as the local backend."""
    from semwh.runs import sweep
    from semwh.runs.result_rows import subject_values

    wh, _, _ = local_sweep
    add_subject_rdms(wh, tmp_path, "glove", n_subjects=3, seed=4)
    options = {**SWEEP, "permutations": 40}

    def stored(result) -> list[tuple]:
        with wh.session() as session:
            return sorted(
                (n[:7] + n[8:], tuple(subject_values(session, n[0], r.result_id)), r.ceiling_lower)
                for n, r in zip(sweep_numbers(wh, result), sorted(
                    result.rows, key=lambda r: ("rsa" if hasattr(r, "rho") else "2v2",
                                                r.space_a)), strict=True)
            )  # fmt: skip

    local = sweep(wh, [MODEL], ["subjects"], **options)
    mapper = sweep_mapper("ray", perm_block=16)
    distributed = sweep(wh, [MODEL], ["subjects"], force=True, mapper=mapper, **options)
    assert mapper.submitted == {"comparisons": 6, "null_blocks": 6 * 3}
    got, expected = stored(distributed), stored(local)
    assert got == expected
    assert all(len(subjects) == 3 and ceiling is not None for _, subjects, ceiling in got)


def test_ray_grid_of_every_measure_matches_local_exactly(local_sweep, ray_cluster) -> None:
    """A grid and a peak run through the runner every family shares: on Ray, with the
    nulls in permutation blocks, the cells, the max-statistic nulls and p-values and the
    peak's depth interval are the local backend's, bit for bit."""
    from semwh.runs.grid import peak_layer

    wh, _, _ = local_sweep
    options = {"tests": ["rsa", "cka", "knn"], "k": 3, "permutations": 40, "seed": 9}

    def numbers(result) -> list[tuple]:
        from semwh.runs.result_rows import null_values

        with wh.session() as session:
            return [
                (g.test, g.best_space_a, g.best_statistic, g.p_fwe_best, g.null_max,
                 g.depth_ci_low, g.depth_ci_high,
                 [(c.space_a, c.statistic, c.p_value, c.p_fwe,
                   tuple(null_values(session, g.test, c.result_id)))
                  for c in result.cells[g.grid_id]])
                for g in result.grids
            ]  # fmt: skip

    local = peak_layer(wh, MODEL, "glove", bootstrap=20, **options)
    mapper = sweep_mapper("ray", perm_block=16)
    distributed = peak_layer(wh, MODEL, "glove", bootstrap=20, force=True, mapper=mapper, **options)
    assert mapper.submitted == {"comparisons": 9, "null_blocks": 9 * 3}
    assert distributed.computed == 9 and distributed.sweep_id != local.sweep_id
    assert numbers(distributed) == numbers(local)


FLAT = "flatnet"


def add_flat_model(wh: Warehouse) -> str:
    """A vision model whose one layer gives every concept of GloVe the same vector."""
    words = load_space(wh, "glove")
    with wh.session() as session:
        session.add(VisionModel(name=FLAT, architecture="toy", weights="none", preprocessing="{}"))
    row = np.linspace(-1.0, 1.0, 16)
    name = f"{FLAT}/flat"
    save_space(
        wh,
        name,
        "layer",
        words.concept_ids,
        np.tile(row, (len(words.concept_ids), 1)),
        model=FLAT,
        layer="flat",
        depth_index=0,
        relative_depth=0.0,
    )
    return name


def finishes(call, seconds: float):
    """``call()``, failing the test instead of hanging when it takes over ``seconds``."""
    out: dict[str, object] = {}

    def target() -> None:
        try:
            out["value"] = call()
        except BaseException as exc:  # re-raised in the test's thread
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"the sweep did not finish within {seconds:.0f} s")
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return out["value"]


def test_ray_sweep_skips_a_degenerate_layer_and_keeps_the_others_exact(
    local_sweep, ray_cluster
) -> None:
    """A layer whose concepts are indistinguishable is skipped by both tests while its null
    blocks are already queued (first, ahead of every other comparison's): the sweep finishes,
    the skipped blocks hold no CPU afterwards, and the other rows are the local backend's."""
    from semwh.runs import sweep

    wh, _local, expected = local_sweep
    flat = add_flat_model(wh)
    mapper = sweep_mapper("ray", perm_block=64)
    result = finishes(
        lambda: sweep(wh, [FLAT, MODEL], ["glove"], force=True, mapper=mapper, **SWEEP), 120
    )
    # Every comparison, the skipped ones included, had its null split into four blocks.
    assert mapper.submitted == {"comparisons": 8, "null_blocks": 8 * 4}
    assert result.computed == 6 and result.seed == 7
    assert sorted((s.test, s.space_a, s.space_b) for s in result.skipped) == [
        ("2v2", flat, "glove"),
        ("rsa", flat, "glove"),
    ]
    for skipped in result.skipped:
        assert skipped.reason.startswith(f"{skipped.test} of space {flat!r} vs space 'glove'")
        assert "nearly identical" in skipped.reason
    assert all(row.space_a != flat for row in result.rows)
    with wh.session() as session:
        params = json.loads(session.get(AnalysisRun, result.analysis_id).params)
    assert params["skipped"] == [s.to_dict() for s in result.skipped]
    assert sweep_numbers(wh, result) == expected  # exact: floats, p-values, FDR and nulls
    # No block task is left running: the local Ray's CPUs come back.
    total = ray.cluster_resources()["CPU"]
    deadline = time.monotonic() + 10
    while ray.available_resources().get("CPU", 0.0) < total:
        assert time.monotonic() < deadline, "null blocks still hold CPUs after the sweep"
        time.sleep(0.1)


def test_killed_ray_extraction_resumes_to_same_rows(
    tmp_path: Path, files: list[Path], local_wh: Warehouse, ray_cluster: str
) -> None:
    wh = new_warehouse(tmp_path / "wh", files)
    args = [
        "--warehouse", str(wh.root), "extract", MODEL, "--layers", LAYERS,
        "--batch-size", str(BATCH), "--shard-size", str(SHARD),
        "--engine", "ray", "--ray-address", ray_cluster, "--shard-pause", "60",
    ]  # fmt: skip
    proc = subprocess.Popen(
        [semwh_bin(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )

    def shards_registered() -> int:
        try:
            with wh.session() as session:
                return session.scalar(select(func.count()).select_from(ExtractionShard)) or 0
        except WarehouseBusyError:
            return 0

    def first_file_written() -> bool:
        # A filesystem check takes no registry lock, so the job's own startup is never blocked.
        return wh.vectors_root.exists() and any(wh.vectors_root.rglob("*.parquet"))

    deadline = time.monotonic() + 150
    try:
        while not first_file_written() or shards_registered() < 1:
            if proc.poll() is not None:
                pytest.fail(
                    f"semwh extract exited early ({proc.returncode}):\n{proc.stderr.read()}"
                )
            if time.monotonic() > deadline:
                pytest.fail("no shard was registered within 150 s")
            time.sleep(0.3)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert shards_registered() == 1

    resumed = run_extraction_ray(wh, ExtractionOptions(MODEL, **extract_kwargs()))
    assert resumed.status == "done"
    assert resumed.shards_skipped == 1 and resumed.shards_done == 2 and resumed.images == 12
    assert_same_rows(wh, local_wh)


def test_killed_ray_sweep_reruns_to_the_local_numbers(
    local_sweep, ray_cluster: str, tmp_path: Path
) -> None:
    """The driver dies after storing its results, before their FDR and its run record: the
    cluster frees its tasks, and a rerun stores the local backend's numbers, computing only
    the cells the dead driver did not commit."""
    from semwh.runs import sweep

    wh, _, _ = local_sweep
    killed = copy_warehouse(wh.root, tmp_path / "killed")
    reference = copy_warehouse(wh.root, tmp_path / "reference")
    options = {**SWEEP, "seed": 9}
    expected = sweep_numbers(reference, sweep(reference, [MODEL], ["glove"], **options))

    def sweeps(w: Warehouse) -> int:
        with w.session() as session:
            return session.scalar(
                select(func.count()).select_from(AnalysisRun).where(AnalysisRun.kind == "sweep")
            )

    def results(w: Warehouse) -> dict[tuple[str, int], str]:
        """Each stored result and the statuses of the sweeps that list it."""
        with w.session() as session:
            listed = {
                (m.test, m.result_id): session.get(Sweep, m.sweep_id).status
                for m in session.scalars(select(SweepMember))
            }
            return {
                (model.__tablename__, row.result_id): listed.get(
                    ("rsa" if model is ResultRSA else "2v2", row.result_id), "unlisted"
                )
                for model in (Result2v2, ResultRSA)
                for row in session.scalars(select(model))
            }

    before, old_results = sweeps(killed), results(killed)
    args = [
        "--warehouse", str(killed.root), "analyze", "sweep", "--models", MODEL,
        "--words", "glove", "--permutations", "200", "--seed", "9", "--no-random",
        "--engine", "ray", "--ray-address", ray_cluster, "--perm-block", "64",
    ]  # fmt: skip
    proc = subprocess.run(
        [semwh_bin(), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "SEMWH_FAULT": "sweep.committed:kill@1"},
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    # The results of its first commit are stored (batches close on a count or a time, so
    # one to six of them), in no family (its sweep never closed), without the sweep's record.
    new = {key: listed for key, listed in results(killed).items() if key not in old_results}
    assert 1 <= len(new) <= 6 and set(new.values()) == {"unlisted"}
    assert sweeps(killed) == before
    # The dead driver's tasks do not hold the cluster.
    total = ray.cluster_resources()["CPU"]
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0.0) < total:
        assert time.monotonic() < deadline, "a killed driver's tasks still hold CPUs"
        time.sleep(0.2)
    rerun = sweep(killed, [MODEL], ["glove"], mapper=sweep_mapper("ray", perm_block=64), **options)
    assert rerun.computed == len(rerun.rows) - len(new) and sweeps(killed) == before + 1
    assert sweep_numbers(killed, rerun) == expected


def test_ray_extraction_of_a_hugging_face_folder_matches_local_rows(
    tmp_path: Path, files: list[Path], ray_cluster: str
) -> None:
    """Another source through Ray: the actors rebuild it from the folder and pool its tokens
    by the layouts the driver checked (class token left out), as the local backend does."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    small = dict(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2)
    config = transformers.ViTConfig(num_attention_heads=2, intermediate_size=32, **small)
    folder = tmp_path / "vit"
    transformers.ViTModel(config).save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    kwargs = {"batch_size": BATCH, "shard_size": SHARD}
    subset = files[:10]
    local = new_warehouse(tmp_path / "local", subset)
    done = run_extraction(
        local, ExtractionOptions(f"hf:{folder}", device="cpu", num_workers=0, **kwargs)
    )
    remote = new_warehouse(tmp_path / "ray", subset)
    summary = run_extraction_ray(remote, ExtractionOptions(f"hf:{folder}", **kwargs))
    assert summary.status == done.status == "done" and summary.layers == done.layers
    assert done.layers == ["embeddings", "layers.0", "layers.1", "layernorm", "pooler"]
    for layer in done.layers:
        ids_r, _, vec_r = image_rows(remote, f"{done.model}/{layer}")
        ids_l, _, vec_l = image_rows(local, f"{done.model}/{layer}")
        assert ids_r.tolist() == ids_l.tolist()
        assert np.abs(vec_r - vec_l).max() <= REL_TOL * np.abs(vec_l).max(), layer
    assert predictions(remote) == predictions(local) == []  # a base model has no classifier
