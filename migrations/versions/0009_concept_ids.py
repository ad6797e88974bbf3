"""concepts keyed by the lab's own id; images carry a stimulus id; wnid only where known

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 07:00:00.000000

A concept is identified by the lab's own id (``aardvark``, ``bean_bag``, or a WordNet id such
as ``n02084071``), so the key column is ``concept`` everywhere:

* ``concepts``: ``concept`` (the key, stored exactly as given), ``name``, ``wnid`` (the
  WordNet 3.0 noun id where one is known; null otherwise), the WordNet enrichment as before,
  and ``attributes`` (the further columns of a concept file, as a JSON object).
* ``images``: ``concept`` and ``stimulus``, the image's own id for joins with per-image lab
  data (unique; the file's stem unless a manifest gives one).
* ``word_tokens``: ``concept``.
* ``recovery_images``: ``true_concept`` and ``predicted_concept``.
* ``predictions`` keep ``wnid``: a model's class is an ImageNet class, named by its wnid.

Every concept of an older warehouse was keyed by its WordNet id, so it keeps that id as its
``concept`` and as its ``wnid``: spaces, content hashes and results stay valid as they are.
Each image's stimulus is its file's stem; when two files share a stem, the later image (by
id) gets ``<stem>~<image_id>``.

The tables are rebuilt (DuckDB cannot rename a column that a foreign key names): copied to
``old_*`` tables, dropped, created anew and refilled, in one transaction.

Vector files written before this revision keep their ``wnid`` column (``vector_files``
``schema_version`` 1); readers and the ``vectors`` view name it ``concept``.

The downgrade puts each concept's id back into the ``wnid`` key column. It loses the
stimulus ids, the attributes, and a WordNet id stored beside a concept id that is not itself
that wnid; an id of the WordNet form without a WordNet id comes back from the upgrade with
itself as wnid; ``semwh db downgrade`` counts them. The upgrade gives an id not of the
WordNet form (a lab's id kept through the downgrade) no wnid. Vector files written since
(schema version 2, key column ``concept``) stay as they are: the older semwh cannot read
them, and the downgrade counts them too.
"""

import re
from collections.abc import Sequence
from pathlib import PurePath

import sqlalchemy as sa
from alembic import op

# WordNet 3.0 noun ids (semwh.ingest.wordnet.WNID_RE; a revision keeps its own copy).
_WNID = re.compile(r"^n[0-9]{8}$")

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: Rebuilt tables, in the order they are dropped (tables that refer to others first).
TABLES = ("word_tokens", "predictions", "recovery_images", "images", "concepts")


def _id(name: str) -> sa.Column:
    return sa.Column(name, ID, autoincrement=False, nullable=False)


def _create_concepts(key: str, new: bool) -> None:
    extra = (
        [
            sa.Column("wnid", sa.String(), nullable=True),
            sa.Column("attributes", sa.Text(), nullable=True),
        ]
        if new
        else []
    )
    columns = [
        sa.Column(key, sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        *extra[:1],
        sa.Column("lemmas", sa.Text(), nullable=True),
        sa.Column("gloss", sa.Text(), nullable=True),
        sa.Column("lexname", sa.String(), nullable=True),
        sa.Column("hypernym_path", sa.Text(), nullable=True),
        sa.Column("imagenet_index", sa.Integer(), nullable=True),
        sa.Column("origin", sa.String(), nullable=False),
        *extra[1:],
        sa.Column("created_at", sa.DateTime(), nullable=False),
    ]
    op.create_table(
        "concepts",
        *columns,
        sa.PrimaryKeyConstraint(key, name=op.f("pk_concepts")),
        sa.UniqueConstraint("imagenet_index", name=op.f("uq_concepts_imagenet_index")),
    )
    if new:
        op.create_index(op.f("ix_concepts_wnid"), "concepts", ["wnid"], unique=False)


def _create_images(key: str, new: bool) -> None:
    stimulus = [sa.Column("stimulus", sa.String(), nullable=False)] if new else []
    unique = [sa.UniqueConstraint("stimulus", name=op.f("uq_images_stimulus"))] if new else []
    op.create_table(
        "images",
        _id("image_id"),
        sa.Column(key, sa.String(), nullable=False),
        *stimulus,
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(), nullable=False),
        sa.Column("split", sa.String(), nullable=True),
        sa.Column("source_id", ID, nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"], ["sources.source_id"], name=op.f("fk_images_source_id_sources")
        ),
        sa.ForeignKeyConstraint([key], [f"concepts.{key}"], name=op.f(f"fk_images_{key}_concepts")),
        sa.PrimaryKeyConstraint("image_id", name=op.f("pk_images")),
        sa.UniqueConstraint("sha256", name=op.f("uq_images_sha256")),
        *unique,
    )
    op.create_index(op.f(f"ix_images_{key}"), "images", [key], unique=False)


def _create_word_tokens(key: str) -> None:
    op.create_table(
        "word_tokens",
        _id("word_model_id"),
        sa.Column(key, sa.String(), nullable=False),
        sa.Column("tokens", sa.Text(), nullable=True),
        sa.Column("rule", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            [key], [f"concepts.{key}"], name=op.f(f"fk_word_tokens_{key}_concepts")
        ),
        sa.ForeignKeyConstraint(
            ["word_model_id"],
            ["word_models.word_model_id"],
            name=op.f("fk_word_tokens_word_model_id_word_models"),
        ),
        sa.PrimaryKeyConstraint("word_model_id", key, name=op.f("pk_word_tokens")),
    )


def _create_predictions() -> None:
    op.create_table(
        "predictions",
        sa.Column("model", sa.String(), nullable=False),
        _id("image_id"),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("wnid", sa.String(), nullable=False),
        sa.Column("class_index", sa.Integer(), nullable=False),
        sa.Column("probability", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.image_id"], name=op.f("fk_predictions_image_id_images")
        ),
        sa.ForeignKeyConstraint(
            ["model"], ["vision_models.name"], name=op.f("fk_predictions_model_vision_models")
        ),
        sa.PrimaryKeyConstraint("model", "image_id", "rank", name=op.f("pk_predictions")),
    )


def _create_recovery_images(key: str) -> None:
    op.create_table(
        "recovery_images",
        _id("result_id"),
        _id("image_id"),
        sa.Column(f"true_{key}", sa.String(), nullable=False),
        sa.Column(f"predicted_{key}", sa.String(), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("score_true", sa.Double(), nullable=False),
        sa.Column("score_predicted", sa.Double(), nullable=False),
        sa.Column("visual_success", sa.Boolean(), nullable=True),
        sa.Column("rank_true", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.image_id"], name=op.f("fk_recovery_images_image_id_images")
        ),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["results_recovery.result_id"],
            name=op.f("fk_recovery_images_result_id_results_recovery"),
        ),
        sa.PrimaryKeyConstraint("result_id", "image_id", name=op.f("pk_recovery_images")),
    )


def _columns(table: str) -> list[str]:
    return [c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)]


def _set_aside() -> None:
    """Copy the rebuilt tables to ``old_*`` tables and drop them (indexes first)."""
    for table in TABLES:
        op.execute(f"CREATE TABLE old_{table} AS SELECT * FROM {table}")
    for table in TABLES:
        for index in sa.inspect(op.get_bind()).get_indexes(table):
            # PostgreSQL lists a unique constraint's own index too; it goes with the table.
            if not index.get("duplicates_constraint"):
                op.drop_index(index["name"], table_name=table)
        op.drop_table(table)


def _refill(table: str, sources: dict[str, str], join: str = "") -> None:
    """INSERT the rows of ``old_<table>`` into the new ``table``; ``sources`` maps a new
    column to the expression it is filled from (default: the column of the same name)."""
    columns = _columns(table)
    values = [sources.get(c, f"o.{c}") for c in columns]
    op.execute(
        f"INSERT INTO {table} ({', '.join(columns)}) "
        f"SELECT {', '.join(values)} FROM old_{table} AS o {join}"
    )


def _drop_old() -> None:
    for table in TABLES:
        op.execute(f"DROP TABLE old_{table}")


def stimulus_ids(rows: Sequence[tuple[int, str]]) -> list[tuple[int, str]]:
    """Each image's stimulus id: its file's stem; a stem already taken (by an image of a
    smaller id) becomes ``<stem>~<image_id>``."""
    taken: set[str] = set()
    out = []
    for image_id, path in sorted(rows):
        stem = PurePath(path.replace("\\", "/")).stem or str(image_id)
        stimulus = stem if stem not in taken else f"{stem}~{image_id}"
        taken.add(stimulus)
        out.append((image_id, stimulus))
    return out


def upgrade() -> None:
    conn = op.get_bind()
    images = [
        (int(i), str(p)) for i, p in conn.execute(sa.text("SELECT image_id, path FROM images"))
    ]
    _set_aside()
    op.execute("CREATE TABLE old_stimuli (image_id BIGINT PRIMARY KEY, stimulus VARCHAR NOT NULL)")
    if images:
        conn.execute(
            sa.text("INSERT INTO old_stimuli VALUES (:i, :s)"),
            [{"i": i, "s": s} for i, s in stimulus_ids(images)],
        )
    _create_concepts("concept", new=True)
    _create_images("concept", new=True)
    _create_word_tokens("concept")
    _create_predictions()
    _create_recovery_images("concept")
    _refill("concepts", {"concept": "o.wnid", "wnid": "o.wnid", "attributes": "NULL"})
    _refill(
        "images",
        {"concept": "o.wnid", "stimulus": "s.stimulus"},
        "JOIN old_stimuli AS s ON s.image_id = o.image_id",
    )
    _refill("word_tokens", {"concept": "o.wnid"})
    _refill("predictions", {})
    _refill(
        "recovery_images",
        {"true_concept": "o.true_wnid", "predicted_concept": "o.predicted_wnid"},
    )
    op.execute("DROP TABLE old_stimuli")
    _drop_old()
    # A key that is not of the WordNet form (a lab's id kept through a downgrade to 0008)
    # is no WordNet id: its concept keeps it as id only.
    not_wnids = [
        {"c": concept}
        for (concept,) in conn.execute(sa.text("SELECT concept FROM concepts"))
        if not _WNID.match(concept)
    ]
    if not_wnids:
        conn.execute(sa.text("UPDATE concepts SET wnid = NULL WHERE concept = :c"), not_wnids)


def downgrade_drops(conn: sa.Connection) -> dict[str, int]:
    """Values the downgrade loses, counted before it runs (``semwh db downgrade`` lists them
    and asks for ``--yes``): every row moves back, without these."""

    def count(sql: str) -> int:
        return int(conn.execute(sa.text(sql)).scalar() or 0)

    return {
        "concepts: attributes": count("SELECT count(*) FROM concepts WHERE attributes IS NOT NULL"),
        "concepts: WordNet ids beside another concept id": count(
            "SELECT count(*) FROM concepts WHERE wnid IS NOT NULL AND wnid <> concept"
        ),
        "images: stimulus ids other than the file's stem": _renamed_stimuli(conn),
        "vector_files: key column concept, which semwh before 0009 cannot read": count(
            "SELECT count(*) FROM vector_files WHERE schema_version >= 2"
        ),
        "concepts: no WordNet id for an id of its form (an upgrade gives it one)": sum(
            bool(_WNID.match(concept))
            for (concept,) in conn.execute(
                sa.text("SELECT concept FROM concepts WHERE wnid IS NULL")
            )
        ),
    }


def _renamed_stimuli(conn: sa.Connection) -> int:
    rows = conn.execute(sa.text("SELECT path, stimulus FROM images"))
    return sum(PurePath(str(path).replace("\\", "/")).stem != stimulus for path, stimulus in rows)


def downgrade() -> None:
    _set_aside()
    _create_concepts("wnid", new=False)
    _create_images("wnid", new=False)
    _create_word_tokens("wnid")
    _create_predictions()
    _create_recovery_images("wnid")
    _refill("concepts", {"wnid": "o.concept"})
    _refill("images", {"wnid": "o.concept"})
    _refill("word_tokens", {"wnid": "o.concept"})
    _refill("predictions", {})
    _refill(
        "recovery_images",
        {"true_wnid": "o.true_concept", "predicted_wnid": "o.predicted_concept"},
    )
    _drop_old()
