"""WordNet 3.0 read through NLTK: lemma names, gloss, lexical file and hypernym path.

WordNet is optional. Debian's ``wordnet-base`` puts the database in ``/usr/share/wordnet``
but lacks the ``lexnames`` file NLTK's reader insists on, and NLTK only opens files below the
folders on its data path (and refuses links out of them). When the folder has no
``lexnames``, the database files are copied into a private temporary folder next to a
generated ``lexnames``; that folder lives as long as the process.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from semwh.config import load_settings
from semwh.errors import ConfigError

DEFAULT_WORDNET = Path("/usr/share/wordnet")
WNID_RE = re.compile(r"^n\d{8}$")
#: A noun synset's name (``aardvark.n.01``), the form some stimulus sets (THINGS) give.
SYNSET_NAME_RE = re.compile(r"^[^.\s][^.]*\.n\.\d{2}$")
INSTALL_HINT = "install Debian's wordnet-base or set SEMWH_WORDNET to a WordNet 3.0 dict folder"

# The lexicographer files of WordNet 3.0 in the order of their numbers (lexnames(5WN)).
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_SYNTACTIC = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}
_DATABASE_FILES = (
    "data.noun",
    "data.verb",
    "data.adj",
    "data.adv",
    "index.noun",
    "index.verb",
    "index.adj",
    "index.adv",
    "noun.exc",
    "verb.exc",
    "adj.exc",
    "adv.exc",
    "cntlist.rev",
)
_REQUIRED = ("data.noun", "index.noun", "data.adj")


def lexnames_text() -> str:
    return "".join(
        f"{i:02d}\t{name}\t{_SYNTACTIC[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES)
    )


@dataclass(frozen=True)
class Synset:
    """What semwh keeps of a noun synset."""

    wnid: str
    lemmas: list[str]
    gloss: str
    lexname: str
    hypernym_path: list[str]


class WordNet:
    """A WordNet 3.0 database opened with NLTK."""

    def __init__(self, folder: Path, reader: object, keep: object = None) -> None:
        self.folder = folder
        self._reader = reader
        self._keep = keep  # the temporary folder, removed when this object goes

    @property
    def description(self) -> str:
        return f"WordNet 3.0 from {self.folder}"

    def wnid_of_name(self, name: str) -> str | None:
        """The wnid of a noun synset's name (``aardvark.n.01`` -> ``n02650541``); None when
        WordNet has no such synset."""
        if not SYNSET_NAME_RE.match(name):
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                found = self._reader.synset(name)  # type: ignore[attr-defined]
            except Exception:  # NLTK raises WordNetError (or ValueError) for unknown names
                return None
        return f"n{found.offset():08d}" if found is not None else None

    def synset(self, wnid: str) -> Synset | None:
        """The noun synset of a wnid, or None when WordNet has no noun at that offset."""
        if not WNID_RE.match(wnid):
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                found = self._reader.synset_from_pos_and_offset("n", int(wnid[1:]))  # type: ignore[attr-defined]
            except Exception:  # NLTK raises assorted errors on offsets that are not synsets
                found = None
        if found is None:
            return None
        paths = found.hypernym_paths()
        path = paths[0] if paths else [found]
        return Synset(
            wnid=wnid,
            lemmas=list(found.lemma_names()),
            gloss=found.definition(),
            lexname=found.lexname(),
            hypernym_path=[f"n{s.offset():08d}" for s in path],
        )


def _reader_class():  # type: ignore[no-untyped-def]
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class Reader(WordNetCorpusReader):
        # NLTK maps other WordNet versions onto its own downloaded copy; semwh reads 3.0 only
        # and uses no multilingual data, so there is nothing to map.
        def map_wn(self, version="wordnet"):  # type: ignore[no-untyped-def]
            return None

    return Reader


@functools.lru_cache(maxsize=4)
def _open(folder: str) -> WordNet:
    import nltk.data

    root = Path(folder)
    keep = None
    if not (root / "lexnames").is_file():
        keep = tempfile.TemporaryDirectory(prefix="semwh-wordnet-")
        staged = Path(keep.name)
        for name in _DATABASE_FILES:
            if (root / name).is_file():
                # A copy, since NLTK refuses symlinks and hard links out of its data roots.
                shutil.copyfile(root / name, staged / name)
        (staged / "lexnames").write_text(lexnames_text())
        root = staged
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reader = _reader_class()(str(root), None)
    version = reader.get_version()
    if version != "3.0":
        raise ConfigError(f"{folder} holds WordNet {version}; semwh's wnids need WordNet 3.0")
    return WordNet(Path(folder), reader, keep)


def resolve_folder(wordnet: str | os.PathLike[str] | None) -> tuple[Path, bool]:
    """The folder to try, and whether the user named it (then failing is an error)."""
    if wordnet is not None:
        return Path(wordnet).expanduser(), True
    configured = load_settings().wordnet
    if configured is not None:
        return configured, True
    return DEFAULT_WORDNET, False


def open_wordnet(
    wordnet: str | os.PathLike[str] | bool | None = None,
) -> tuple[WordNet | None, str]:
    """Open WordNet 3.0 if it can be read; its absence is reported, not fatal.

    Args:
        wordnet: A folder; None or True to use ``SEMWH_WORDNET`` or ``/usr/share/wordnet``;
            False not to use WordNet.

    Returns:
        The database (or None) and a line saying what was used or why not.

    Raises:
        ConfigError: A folder was named explicitly (argument or SEMWH_WORDNET) but cannot
            be read as WordNet 3.0.
    """
    if wordnet is False:
        return None, "WordNet not used (disabled)"
    folder, named = resolve_folder(None if wordnet is True else wordnet)  # type: ignore[arg-type]
    missing = [name for name in _REQUIRED if not (folder / name).is_file()]
    if missing:
        if named:
            raise ConfigError(
                f"WordNet folder {folder} lacks {', '.join(missing)}: point SEMWH_WORDNET or "
                "--wordnet at the folder holding data.noun and index.noun"
            )
        return None, f"WordNet not used: no WordNet 3.0 files in {folder} ({INSTALL_HINT})"
    try:
        import nltk  # noqa: F401
    except ImportError:
        return None, "WordNet not used: the nltk package is not installed (pip install nltk)"
    try:
        return _open(str(folder.resolve())), f"WordNet 3.0 from {folder}"
    except Exception as exc:
        if named and isinstance(exc, ConfigError):
            raise
        if named:
            raise ConfigError(f"NLTK cannot read WordNet in {folder}: {exc}") from exc
        return None, f"WordNet not used: NLTK cannot read {folder} ({exc})"
