"""Which image files a lab's stimulus set holds, and the concept and stimulus id of each.

No database and no decoding: :func:`scan_images` reads a folder, :func:`read_image_manifest`
a manifest, and both return an :class:`ImageListing` whose concept keys are the raw ids as
written (Unicode NFC, trimmed); they are resolved against the registry later.

Layouts of a folder ``DIR``:

``folder``
    ``DIR/<concept>/<file>``: the first-level sub-folder names the concept (THINGS'
    ``object_images/aardvark/aardvark_01b.jpg``, torchvision's ImageFolder, ImageNet's train
    set ``DIR/n01440764/*.JPEG``). As in ImageFolder, a file may sit at any depth below its
    concept's folder (``DIR/aardvark/set1/x.jpg`` shows an aardvark). Files directly in
    ``DIR`` belong to no concept: they are skipped with that reason.

``prefix``
    ``<concept>_<rest>.<ext>``: the file name begins with its concept. Sub-folders only
    organise (``DIR/train/``, ``DIR/val/``): every image below ``DIR`` is read by its name.
    The concept of a name (its stem, the part before the last dot) is, by the first rule
    that decides it:

    1. ImageNet names ``n########_<id>[_<label>]``: the WordNet id ``n########``, exactly as
       before (``n01443537_11099_goldfish`` shows n01443537, named goldfish).
    2. With ``known_concepts``: the longest known id the name begins with, followed by ``_``
       or making up the whole name (``bean_bag_01b`` -> bean_bag, ``aardvark`` ->
       aardvark). A name that rule 3 reads as a longer id that is not known is undecided
       rather than given to the shorter one: ``bean_bag_01b`` with only ``bean`` known.
    3. The part before the last ``_`` when the part after it holds a digit, as stimulus
       numbers do (``ice_cream_03s`` -> ice_cream, ``cat_0001`` -> cat).

    A name no rule decides (``cat_photo``, ``aardvark`` without known concepts) is skipped
    with the reason: ingest the concepts first so that their ids decide, or list the files
    in a manifest.

Auto-detection (``layout=None``) looks only at where the images sit: only in sub-folders is
``folder``, only directly in ``DIR`` is ``prefix``; both, or no images at all, is an error
that gives the counts and how to choose. So is images only in sub-folders none of which is
named by a WordNet id, every one named ``n########_...`` (ImageNet below ``train/`` and
``val/``): the folders would become concepts.

Every folder scan ignores hidden files and folders (names beginning with ``.``, such as
macOS' ``._x.jpg``) and ``__MACOSX``, counts the files whose suffix is not an image's, and
treats links as ingest always has: a link to a regular file is read (its own path is
listed), a link to a folder is not followed (it is listed as skipped, with the reason), and
anything else that is not a regular file (a broken link, a FIFO, a device) is skipped.

The stimulus id of an image is its file's stem unless a manifest gives one; ids follow the
rule of concept ids (:func:`check_key`) and are unique within a listing.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from semwh.errors import ConfigError, InputError
from semwh.ingest.files import csv_rows, not_regular, read_text_file, regular_size
from semwh.ingest.keys import id_problem, key_column, normalise
from semwh.ingest.wordnet import WNID_RE

# The same values as semwh.ingest.images', defined here so that images can import this
# module (not the other way round) when it reads folders through it.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
#: ImageNet's <wnid>_<image id>[_<label>]: the label may itself hold underscores (domestic_cat).
FLAT_NAME = re.compile(r"^(n\d{8})_([^_]+)(?:_(.+))?$")
LAYOUTS = ("folder", "prefix")
#: Folders a scan never enters besides hidden ones: archivers' resource forks.
IGNORED_FOLDERS = frozenset({"__MACOSX"})
#: Optional columns of a manifest besides path and concept (or wnid).
MANIFEST_OPTIONAL = ("stimulus", "split", "label")
_DIGIT = re.compile(r"\d")
_CHOOSE = (
    "choose --layout folder (DIR/<concept>/*: the first-level sub-folder is the concept) or "
    "--layout prefix (<concept>_<rest>.<ext>: the file name begins with the concept), or "
    "list the images in a --manifest with columns path and concept"
)


@dataclass(frozen=True)
class ImageEntry:
    """One image file of a listing.

    Attributes:
        path: The file: absolute, the scanned folder resolved (a link to a file keeps its
            own name); a manifest's paths resolved.
        concept_key: The concept as written (NFC, trimmed), not yet checked against the
            registry.
        stimulus: The stimulus id: the manifest's ``stimulus`` cell, else the file's stem.
        split: The manifest's ``split`` cell; None for folder scans.
        where: Where it was listed, for messages: the path relative to the scanned folder
            (``aardvark/aardvark_01b.jpg``) or the manifest line (``/data/m.csv line 4``).
        label: A name for a concept that images introduce: the manifest's ``label`` cell,
            or the ``<label>`` of an ImageNet name ``n########_<id>_<label>`` whose WordNet
            id is its concept; None otherwise.
    """

    path: Path
    concept_key: str
    stimulus: str
    split: str | None
    where: str
    label: str | None = None


@dataclass(frozen=True)
class ImageListing:
    """The images of a folder or manifest, sorted by path.

    Attributes:
        layout: ``folder``, ``prefix`` or ``manifest``.
        source: The folder scanned or the manifest read (absolute).
        entries: One per image, sorted by path; stimulus ids are unique.
        skipped: (path, reason) for image files that are not listed: not regular files,
            links to folders, unreadable folders, files whose concept or stimulus id cannot
            be decided or breaks the id rule; sorted by path.
        not_images: Files skipped for a suffix that is not an image's, counted by suffix
            (lower case; ``""`` for none). Hidden files are not counted.
    """

    layout: str
    source: Path
    entries: tuple[ImageEntry, ...]
    skipped: tuple[tuple[str, str], ...] = ()
    not_images: dict[str, int] = field(default_factory=dict)

    @property
    def concepts(self) -> list[str]:
        """The concept keys of the entries, sorted, each once."""
        return sorted({entry.concept_key for entry in self.entries})

    @property
    def n_not_images(self) -> int:
        """How many files were skipped for a suffix that is not an image's."""
        return sum(self.not_images.values())


# -- the rule of ids -------------------------------------------------------------------------


def normalize_key(value: str) -> str:
    """``value`` in Unicode NFC without leading or trailing blanks (the rule of
    :func:`semwh.ingest.keys.normalise`)."""
    return normalise(value)


def key_problem(key: str) -> str | None:
    """Why a normalized key cannot be a concept or stimulus id (None: it can): the rule of
    :func:`semwh.ingest.keys.id_problem`."""
    return id_problem(key)


def check_key(value: str, what: str, place: str) -> str:
    """``value`` as an id: NFC, trimmed, non-empty, without ``/`` or control characters.

    Args:
        value: The id as written.
        what: What it identifies, for the message (``concept``, ``stimulus``).
        place: Where it was read (file and line).

    Raises:
        InputError: The id breaks the rule; the message names ``place`` and the problem.
    """
    key = normalize_key(value)
    problem = key_problem(key)
    if problem is not None:
        if not key:
            raise InputError(f"{place}: empty {what}")
        raise InputError(f"{place}: {what} {value!r} is not a valid id ({problem})")
    return key


# -- concepts from file names ----------------------------------------------------------------


def _suffix_concept(stem: str) -> str | None:
    """Rule 3: the part before the last ``_`` when the part after it holds a digit."""
    head, sep, tail = stem.rpartition("_")
    return head if sep and head and _DIGIT.search(tail) else None


def _known_concept(stem: str, known: Container[str]) -> str | None:
    """Rule 2: the longest known id that is the whole stem or a prefix ending before ``_``."""
    if stem in known:
        return stem
    cuts = [i for i, c in enumerate(stem) if c == "_" and i > 0]
    return next((stem[:i] for i in reversed(cuts) if stem[:i] in known), None)


def concept_from_name(
    stem: str, known_concepts: Container[str] | None = None
) -> tuple[str | None, str | None, str]:
    """The concept a file name ``<concept>_<rest>`` gives, by the rules of this module.

    Args:
        stem: The file's name without its suffix, in NFC.
        known_concepts: Registered concept ids; None when none are known.

    Returns:
        (concept, label, why): the concept (None when undecided), the ImageNet label of the
        name if any, and why it is undecided ("" when decided).
    """
    flat = FLAT_NAME.match(stem)
    if flat is not None:
        return flat.group(1), flat.group(3), ""
    readable = _suffix_concept(stem)
    known = _known_concept(stem, known_concepts) if known_concepts is not None else None
    if known is not None:
        if readable is not None and len(readable) > len(known):
            return (
                None,
                None,
                f"the name {stem!r} begins with the known concept {known!r} but reads as the "
                f"concept {readable!r}, which is not known: ingest the concept {readable!r} "
                "first, or list the file in a manifest",
            )
        return known, None, ""
    if readable is not None:
        return readable, None, ""
    if "_" not in stem:
        rule = f"<concept>_<rest> needs a '_' in the name {stem!r}"
    else:
        rule = (
            f"in the name {stem!r} the part after the last '_' holds no digit, so where the "
            "concept ends is unclear"
        )
    hint = (
        "none of the known concept ids begins it"
        if known_concepts is not None
        else "ingest the concepts first so that their ids decide"
    )
    return None, None, f"no concept: {rule}; {hint}, or list the file in a manifest"


# -- folders ---------------------------------------------------------------------------------


def _hidden(name: str) -> bool:
    return name.startswith(".") or name in IGNORED_FOLDERS


@dataclass
class _Walk:
    """The image files below a folder, as relative paths, and what was set aside."""

    files: list[PurePath] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    not_images: dict[str, int] = field(default_factory=dict)


def _walk(root: Path) -> _Walk:
    found = _Walk()

    def unreadable(exc: OSError) -> None:
        found.skipped.append(
            (str(exc.filename), f"folder cannot be read ({exc.strerror or exc}): not scanned")
        )

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        parent = Path(dirpath)
        kept = []
        for name in sorted(dirnames):
            if _hidden(name):
                continue
            if (parent / name).is_symlink():
                found.skipped.append(
                    (
                        str(parent / name),
                        "is a link to a folder: not followed (list its images in a manifest, "
                        "or copy or link the files themselves)",
                    )
                )
                continue
            kept.append(name)
        dirnames[:] = kept
        rel_parent = parent.relative_to(root)
        for name in sorted(filenames):
            if _hidden(name):
                continue
            path = parent / name
            suffix = path.suffix.lower()
            if suffix not in IMAGE_SUFFIXES:
                found.not_images[suffix] = found.not_images.get(suffix, 0) + 1
                continue
            reason = not_regular(path)
            if reason is not None:
                found.skipped.append((str(path), reason))
                continue
            found.files.append(rel_parent / name)
    return found


def _detect(root: Path, walk: _Walk) -> str:
    """The layout that where the images sit shows; an error when it shows none."""
    flat = [f for f in walk.files if len(f.parts) == 1]
    nested = [f for f in walk.files if len(f.parts) > 1]
    if flat and nested:
        n_folders = len({f.parts[0] for f in nested})
        raise InputError(
            f"image folder {root} holds {len(flat)} image file(s) directly in it (e.g. "
            f"{flat[0].as_posix()}) and {len(nested)} in {n_folders} sub-folder(s) (e.g. "
            f"{nested[0].as_posix()}), so its layout is unclear: {_CHOOSE}"
        )
    if nested:
        folders = sorted({f.parts[0] for f in nested})
        if not any(WNID_RE.match(name) for name in folders) and all(
            FLAT_NAME.match(f.stem) for f in nested
        ):
            # ImageNet's names below organising folders (train/, val/): the folders would
            # become concepts.
            shown = ", ".join(folders[:3]) + (", ..." if len(folders) > 3 else "")
            raise InputError(
                f"image folder {root} holds its images in sub-folders ({shown}), but every "
                f"file name begins with a WordNet id (e.g. {nested[0].as_posix()}), so its "
                f"layout is unclear: {_CHOOSE}"
            )
        return "folder"
    if flat:
        return "prefix"
    others = ", ".join(
        f"{n} {suffix or '(no suffix)'}" for suffix, n in sorted(walk.not_images.items())
    )
    suffixes = " ".join(sorted(IMAGE_SUFFIXES))
    raise InputError(
        f"image folder {root} holds no image files ({suffixes}), neither directly in it nor in "
        f"sub-folders"
        + (f"; it holds other files: {others}" if others else "")
        + (
            f"; {len(walk.skipped)} set aside ({walk.skipped[0][0]} {walk.skipped[0][1]})"
            if walk.skipped
            else ""
        )
        + f": {_CHOOSE}"
    )


def _entry_of_file(
    root: Path, rel: PurePath, layout: str, known: Container[str] | None
) -> ImageEntry | str:
    """The entry of one image file, or why it is skipped."""
    path = root / rel
    where = rel.as_posix()
    stem = normalize_key(path.stem)
    label: str | None = None
    if layout == "folder":
        if len(rel.parts) == 1:
            return (
                "directly in the image folder, so in no concept's folder (DIR/<concept>/...): "
                "move it into its concept's folder, or use --layout prefix or a --manifest"
            )
        folder_name = rel.parts[0]
        concept = normalize_key(folder_name)
        problem = key_problem(concept)
        if problem is not None:
            return f"its folder {folder_name!r} is not a valid concept id ({problem})"
        flat = FLAT_NAME.match(stem)
        if flat is not None and WNID_RE.match(concept) and flat.group(1) == concept:
            label = flat.group(3)
    else:
        found, label, why = concept_from_name(stem, known)
        if found is None:
            return why
        concept = normalize_key(found)
        problem = key_problem(concept)
        if problem is not None:
            return f"the concept {found!r} its name gives is not a valid id ({problem})"
    problem = key_problem(stem)
    if problem is not None:
        return f"its stem {path.stem!r} is not a valid stimulus id ({problem}); use a manifest"
    return ImageEntry(path, concept, stem, None, where, label)


def _check_unique_stimuli(entries: Iterable[ImageEntry], source: str, hint: str) -> None:
    """Refuse two entries with one stimulus id, naming the first such pair and the count."""
    first: dict[str, ImageEntry] = {}
    clashes: list[tuple[ImageEntry, ImageEntry]] = []
    for entry in entries:
        seen = first.setdefault(entry.stimulus, entry)
        if seen is not entry:
            clashes.append((seen, entry))
    if not clashes:
        return
    a, b = (entry.where.removeprefix(f"{source} ") for entry in clashes[0])
    stimulus = clashes[0][0].stimulus
    more = f" (and {len(clashes) - 1} more image(s) whose id is taken)" if len(clashes) > 1 else ""
    raise InputError(
        f"{source}: {a} and {b} both have the stimulus id {stimulus!r}{more}; "
        f"a stimulus id names one image: {hint}"
    )


def scan_images(
    folder: str | os.PathLike[str],
    *,
    layout: str | None = None,
    known_concepts: Container[str] | None = None,
) -> ImageListing:
    """The image files of a folder, with the concept and stimulus id of each.

    Args:
        folder: The folder of the stimulus set.
        layout: ``folder`` (``DIR/<concept>/*``), ``prefix`` (``<concept>_<rest>.<ext>``)
            or None to detect it from where the images sit (see the module's docstring).
        known_concepts: Registered concept ids, which decide where a ``prefix`` name's
            concept ends (``bean_bag_01b``); unused by the ``folder`` layout.

    Returns:
        The listing; files whose concept cannot be decided are in its ``skipped``. An
        explicit layout that finds no image gives an empty listing.

    Raises:
        ConfigError: ``layout`` is not one of folder, prefix or None.
        InputError: The folder does not exist; its layout cannot be detected (images both
            directly in it and in sub-folders, or none at all); two images have one
            stimulus id.
    """
    if layout is not None and layout not in LAYOUTS:
        raise ConfigError(f"unknown image layout {layout!r} (choose {' or '.join(LAYOUTS)})")
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise InputError(f"image folder {root} {what}")
    walk = _walk(root)
    chosen = layout if layout is not None else _detect(root, walk)
    entries: list[ImageEntry] = []
    skipped = list(walk.skipped)
    for rel in walk.files:
        entry = _entry_of_file(root, rel, chosen, known_concepts)
        if isinstance(entry, str):
            skipped.append((str(root / rel), entry))
        else:
            entries.append(entry)
    entries.sort(key=lambda e: e.where)
    _check_unique_stimuli(
        entries,
        f"image folder {root}",
        "rename one of the files, or list the images in a --manifest with a stimulus column",
    )
    return ImageListing(
        chosen, root, tuple(entries), tuple(sorted(skipped)), dict(sorted(walk.not_images.items()))
    )


# -- manifests -------------------------------------------------------------------------------


def _text_rows(path: Path) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The header and the (place, cells) of each non-blank row of a CSV or TSV manifest."""
    text = read_text_file(path, "manifest")
    first = text.split("\n", 1)[0]
    tabbed = path.suffix.lower() in (".tsv", ".tab") or ("\t" in first and "," not in first)
    reader = csv.reader(io.StringIO(text), delimiter="\t" if tabbed else ",")
    rows = csv_rows(path, reader)
    header = [cell.strip() for cell in next(rows, [])]
    body = []
    for cells in rows:
        if not any(cell.strip() for cell in cells):
            continue
        place = f"{path} line {reader.line_num}"
        if len(cells) != len(header):
            raise InputError(f"{place}: {len(cells)} fields, the header has {len(header)}")
        body.append((place, cells))
    return header, body


def _parquet_rows(path: Path) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The columns and the (place, cells) of each row of a Parquet manifest, as text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    regular_size(path, "manifest")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from exc
    header = list(table.column_names)
    columns = []
    for name in header:
        cells = []
        for row, value in enumerate(table.column(name).to_pylist()):
            if value is None:
                cells.append("")
            elif isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
                cells.append(str(value))
            else:
                raise InputError(
                    f"{path} row {row}: column {name!r} holds {value!r}, expected text"
                )
        columns.append(cells)
    body = [
        (f"{path} row {row}", [column[row] for column in columns]) for row in range(table.num_rows)
    ]
    return header, body


def read_image_manifest(path: str | os.PathLike[str]) -> ImageListing:
    """The images a manifest lists: CSV, TSV or Parquet with columns ``path`` and ``concept``.

    Old manifests name the concept column ``wnid``; its cells must then be WordNet ids (a
    manifest of a lab's own ids names the column ``concept``; with both, ``concept`` is the
    key and ``wnid`` is not read here). Optional columns: ``stimulus`` (the stimulus id; an
    empty cell is the stem of the file's name as written, a link's own), ``split`` and
    ``label`` (a name for a concept the images introduce; without it an ImageNet name
    ``n########_<id>_<label>`` of that WordNet id gives it). Relative paths are relative to
    the manifest's folder; paths are resolved (links too), as ingest has always stored
    them. A file that does not exist is listed (reading it reports it).

    Raises:
        InputError: The manifest is unreadable, lacks a column, or a row has an empty path
            or concept, an invalid id, a path given again, a stimulus id given again or a
            path that is not a regular file; the message names the line (``row`` for
            Parquet, counted from 0).
    """
    manifest = Path(path).expanduser().resolve()
    if manifest.suffix.lower() == ".parquet":
        header, body = _parquet_rows(manifest)
    else:
        header, body = _text_rows(manifest)
    head = str(manifest) if manifest.suffix.lower() == ".parquet" else f"{manifest} line 1"
    repeated = sorted({name for name in header if header.count(name) > 1 and name})
    if repeated:
        raise InputError(f"{head}: column {repeated[0]!r} appears twice")
    key = key_column(header)
    if "path" not in header or key is None:
        raise InputError(
            f"{head}: an image manifest needs the columns path and concept (and "
            f"optionally {', '.join(MANIFEST_OPTIONAL)}); found {', '.join(header) or 'none'}"
        )
    at = {name: header.index(name) for name in ("path", key, *MANIFEST_OPTIONAL) if name in header}
    entries: list[ImageEntry] = []
    first_line: dict[Path, str] = {}
    for place, cells in body:
        cell = {name: cells[i].strip() for name, i in at.items()}
        if not cell["path"]:
            raise InputError(f"{place}: empty path")
        concept = check_key(cells[at[key]], "concept", place)
        if key == "wnid" and not WNID_RE.match(concept):
            raise InputError(
                f"{place}: {concept!r} in the column wnid is not a WordNet 3.0 noun id "
                "(expected 'n' and 8 digits); name the column concept for the lab's own ids"
            )
        written = Path(cell["path"]).expanduser()
        file = (written if written.is_absolute() else manifest.parent / written).resolve()
        if file in first_line:
            raise InputError(
                f"{place}: the path {cell['path']!r} names the file of "
                f"{first_line[file].removeprefix(str(manifest) + ' ')} again ({file}); list "
                "each image once"
            )
        first_line[file] = place
        reason = not_regular(file)
        if reason is not None and reason != "does not exist":
            # A FIFO would block the read and a device (/dev/zero) would never end it.
            raise InputError(f"{place}: {file} {reason}; list image files only")
        # The name as written, not a link's target (git-annex names its objects by hash).
        stem = written.stem
        stimulus = check_key(cell.get("stimulus") or stem, "stimulus", place)
        label = cell.get("label") or None
        flat = FLAT_NAME.match(stem)
        if label is None and flat is not None and flat.group(1) == concept:
            label = flat.group(3)
        entries.append(ImageEntry(file, concept, stimulus, cell.get("split") or None, place, label))
    if not entries:
        raise InputError(f"{manifest}: the manifest lists no images")
    entries.sort(key=lambda e: str(e.path))
    hint = (
        "give each image its own id in the stimulus column"
        if "stimulus" in header
        else "add a stimulus column with an id for each image"
    )
    _check_unique_stimuli(entries, str(manifest), hint)
    return ImageListing("manifest", manifest, tuple(entries))
