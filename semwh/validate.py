"""One check for every number a user gives: levels, probabilities and counts.

Every entry point (command-line options, run files, named-query parameters, the Python API)
checks its numbers here where they enter, so that NaN, infinities, booleans and values out of
range are refused before they are used, in one line naming the option and the allowed range.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

from semwh.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """An interval of allowed values (``None``: unbounded on that side).

    Attributes:
        low: The lower bound.
        high: The upper bound.
        low_open: The lower bound itself is not allowed.
        high_open: The upper bound itself is not allowed.
        integer: Only whole numbers.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def describe(self) -> str:
        """The range in words: ``a number in (0, 1)``, ``1 or more (a whole number)``."""
        kind = "a whole number" if self.integer else "a number"

        def show(x: float) -> str:
            return str(int(x)) if float(x).is_integer() else repr(x)

        if self.low is not None and self.high is not None:
            left = "(" if self.low_open else "["
            right = ")" if self.high_open else "]"
            return f"{kind} in {left}{show(self.low)}, {show(self.high)}{right}"
        if self.low is not None:
            side = f"above {show(self.low)}" if self.low_open else f"{show(self.low)} or more"
        elif self.high is not None:
            side = f"below {show(self.high)}" if self.high_open else f"{show(self.high)} or less"
        else:
            return f"{kind} (finite)"
        return f"{side} ({kind})"

    def contains(self, x: float) -> bool:
        if self.low is not None and (x < self.low or (self.low_open and x == self.low)):
            return False
        return not (
            self.high is not None and (x > self.high or (self.high_open and x == self.high))
        )


#: A significance level or FDR level: strictly between 0 and 1.
LEVEL = Range(0.0, 1.0, low_open=True, high_open=True)
#: A count that may be 0 (permutations: 0 means no test).
COUNT = Range(0, None, integer=True)
#: A count of at least one (bins, batch sizes, resamples).
POSITIVE_COUNT = Range(1, None, integer=True)
#: A seed: stored as a signed 64-bit integer.
SEED = Range(0, 2**63 - 1, integer=True)


def check_number(value: Any, what: str, allowed: Range = Range()) -> Any:
    """``value`` if it is a finite real number in ``allowed`` (an ``int`` for integer ranges).

    Args:
        value: The value as given (text is not converted here).
        what: The option as the user named it (``--alpha``, ``[report] alpha``).
        allowed: The allowed range.

    Raises:
        ConfigError: NaN, an infinity, a boolean, a non-number, a fraction where a whole
            number is needed, or a value outside the range; the message names ``what`` and
            the range.
    """
    ok = isinstance(value, Real) and not isinstance(value, bool)
    if ok and allowed.integer:
        ok = isinstance(value, Integral) or (
            math.isfinite(float(value)) and float(value).is_integer()
        )
    if ok:
        ok = math.isfinite(float(value)) and allowed.contains(float(value))
    if not ok:
        raise ConfigError(f"{what} must be {allowed.describe()}, got {value!r}")
    return int(value) if allowed.integer else float(value)


def check_level(value: Any, what: str = "alpha") -> float:
    """A significance (or FDR) level: a number strictly between 0 and 1."""
    return float(check_number(value, what, LEVEL))


#: Largest count a registry column holds (permutations, resamples, sizes: 32-bit integers).
MAX_COUNT = 2**31 - 1


def check_count(value: Any, what: str, minimum: int = 0) -> int:
    """A whole number from ``minimum`` to :data:`MAX_COUNT`."""
    count = int(check_number(value, what, Range(minimum, None, integer=True)))
    if count > MAX_COUNT:
        raise ConfigError(
            f"{what} must be at most {MAX_COUNT} (the registry stores counts as 32-bit "
            f"integers), got {value!r}"
        )
    return count


_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,]*?)\s*,\s*([^,]*?)\s*([\])])\s*$")


def parse_range(text: str, *, integer: bool = False) -> Range:
    """An interval written ``(0, 1)``, ``[1, 1000]`` or ``[1, )`` (an empty side: unbounded).

    Raises:
        ValueError: Not an interval.
    """
    match = _INTERVAL.match(text)
    if not match:
        raise ValueError(f"not an interval: {text!r} (write it like (0, 1) or [1, ])")
    left, low, high, right = match.groups()
    return Range(
        float(low) if low else None,
        float(high) if high else None,
        low_open=left == "(",
        high_open=right == ")",
        integer=integer,
    )
