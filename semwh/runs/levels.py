"""The items a comparison runs over: its level, permutation scheme and bootstrap unit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from semwh.analyze.design import (
    CONCEPT_LEVEL,
    check_level,
    check_permute,
    check_resample,
)
from semwh.errors import ConfigError


@dataclass(frozen=True)
class Items:
    """What a comparison compares: concepts, or stimuli at the image level.

    Attributes:
        level: ``concept`` (concept means; the default) or ``image`` (the stimuli both spaces
            have).
        permute: At the image level, how permutations relabel the stimuli: ``concepts``
            (each concept's images move together), ``images`` or ``within-concept``; None:
            ``concepts`` when any concept has two or more images, else ``images``.
        resample: At the image level, what a bootstrap draws: ``concepts`` (with all their
            images) or ``images``; None as for ``permute``.

    Raises:
        ConfigError: An unknown value, or a scheme at the concept level other than
            ``concepts``.
    """

    level: str = "concept"
    permute: str | None = None
    resample: str | None = None

    def __post_init__(self) -> None:
        check_level(self.level)
        check_permute(self.permute)
        check_resample(self.resample)
        if self.level == "concept":
            for flag, value in (("--permute", self.permute), ("--bootstrap-over", self.resample)):
                if value not in (None, CONCEPT_LEVEL):
                    raise ConfigError(
                        f"{flag} {value} applies at the image level (add --level image); at "
                        "the concept level the concepts themselves are permuted and resampled"
                    )

    @property
    def image(self) -> bool:
        return self.level == "image"

    def params(self) -> dict[str, Any]:
        """What a family records of them (empty at the concept level)."""
        if not self.image:
            return {}
        return {"level": self.level, "permute": self.permute, "resample": self.resample}


CONCEPTS = Items()
