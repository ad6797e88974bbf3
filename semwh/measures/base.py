"""What a measure is: its options and the functions every path calls.

A measure compares two spaces over their shared concepts. It declares, in one module:

- ``name`` (stored in ``results.measure``, typed on the command line), labels for tables
  and figures, a one-line summary;
- its options, a frozen dataclass derived from :class:`Options` whose own fields (beyond
  permutations, seed, bootstrap and device) have defaults and are hashed into the reuse key;
- what its inputs must be (:data:`FEATURES`: both spaces' vectors; :data:`SIMILARITIES`:
  concept similarity matrices, so that an RDM target with subjects can be space B);
- its statistic and permutation null (blocks of permutations that concatenate exactly), the
  p-value rule, chance level, direction and algorithm version;
- optionally, its statistic as a function of concept counts (for paired differences) and on
  concept resamples (for the peak layer's depth interval).

Sweeps, grids, peaks, differences, verify, the Ray backend, the named queries' choices and the
report read the registry (:mod:`semwh.measures`); none lists measures by hand.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from semwh import validate
from semwh.analyze.permutation import permutation_p_value
from semwh.errors import ConfigError

#: A measure of feature vectors: both spaces give their vectors over the concepts.
FEATURES = "features"
#: A measure of concept similarity matrices: space B may be an RDM target with subjects.
SIMILARITIES = "similarities"

DEVICES = ("cpu", "cuda")
#: ``auto``: cuda when a CUDA device is available, else cpu (resolved when options are made).
AUTO_DEVICE = "auto"
#: Seeds are stored as signed 64-bit integers.
MAX_SEED = 2**63 - 1

#: The fields every measure's options have; the others are the measure's own.
COMMON_FIELDS = ("test", "permutations", "seed", "bootstrap", "device", "bootstrap_seed")

#: Makes the n x n output array of one similarity matrix (in memory, or a file in tmp/).
Allocate = Callable[[int], np.ndarray]
#: A statistic as a function of concept counts (weights), for paired differences.
WeightedStatistic = Callable[[np.ndarray], float]


class ComparisonSpec(Protocol):
    """What a measure reads of a comparison (:class:`semwh.measures.spec.ComparisonSpec`)."""

    space_a: str
    space_b: str
    concept_ids: tuple[str, ...]
    a: np.ndarray
    b: np.ndarray
    options: Any
    subjects: tuple[str, ...] | None

    @property
    def n_concepts(self) -> int: ...


def check_choice(value: str, choices: Sequence[str], what: str) -> str:
    """Return ``value`` if it is one of ``choices``, else raise naming the valid ones."""
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r} (choose {', '.join(choices)})")
    return value


def check_seed(seed: int | None) -> int | None:
    """Return ``seed`` (None: draw one later) if it is an integer from 0 to 2**63 - 1.

    Every analysis checks its seed here before anything is loaded, computed or stored.
    """
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(
            f"seed must be 0 or more and below 2**63 (at most {MAX_SEED}), got {seed!r}"
        )
    return int(seed)


def check_device(device: str) -> str:
    """Accept ``cpu``, ``cuda``, ``cuda:N`` and ``auto`` (resolved to cuda or cpu here)."""
    if device == AUTO_DEVICE:
        return resolve_auto_device()
    base = device.split(":", 1)[0]
    check_choice(base, DEVICES, "device")
    return device


def resolve_auto_device() -> str:
    """``cuda`` when torch sees a CUDA device, else ``cpu`` (also without torch)."""
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class Options:
    """What every measure's options have; a measure's options class adds its own fields.

    Attributes:
        test: The measure's name.
        permutations: Size of the permutation null (0: no p-value).
        seed: Seed of the permutations and bootstrap; None draws one when needed.
        bootstrap: Bootstrap resamples of the concepts for a 95% interval (0: none), for
            measures that have one.
        device: Where heavy matrix work runs; never changes which numbers are stored.
        bootstrap_seed: The parent seed of the bootstrap's resamples (None: ``seed``); a
            sweep gives every layer of one model against one target the same one, so their
            intervals use the same resamples. Only with ``bootstrap``.
    """

    test: str
    permutations: int = 0
    seed: int | None = None
    bootstrap: int = 0
    device: str = "cpu"
    bootstrap_seed: int | None = None

    def settings(self) -> dict[str, Any]:
        """The measure's own options (hashed into the reuse key, stored in ``options``)."""
        return {
            f.name: _plain(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name not in COMMON_FIELDS
        }

    @property
    def variant(self) -> str:
        """A readable label of the measure's own options (``results.variant``)."""
        return ",".join(f"{k}={v}" for k, v in self.settings().items()) or "default"

    @property
    def metric(self) -> str:
        return self.variant

    @property
    def needs_seed(self) -> bool:
        return self.permutations > 0 or self.bootstrap > 0

    def bootstrap_parent(self) -> int:
        """The seed the bootstrap streams derive from: ``bootstrap_seed``, else ``seed``."""
        if self.bootstrap_seed is not None:
            return self.bootstrap_seed
        return self.seed if self.seed is not None else 0


def _plain(value: Any) -> Any:
    """A value as JSON holds it (tuples as lists)."""
    return list(value) if isinstance(value, tuple) else value


def own_fields(options_type: type[Options]) -> list[dataclasses.Field[Any]]:
    """The fields of a measure's options beyond the common ones."""
    return [f for f in dataclasses.fields(options_type) if f.name not in COMMON_FIELDS]


def coerce(value: Any, default: Any, what: str) -> Any:
    """A setting's value (text from the command line, or a Python value) in the type of its
    default: bool, int, float, text (also for a default of None), or a tuple or list of such
    items (comma-separated on the command line; the items take the type of the default's
    first item, numbers without one).

    Raises:
        ConfigError: A value that does not read as that type, or a number that is not finite.
    """
    if isinstance(default, tuple | list):
        items = (
            [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        )
        try:
            items = list(items)
        except TypeError:
            raise ConfigError(f"{what} must be a list, got {value!r}") from None
        item_default = default[0] if len(default) else 0.0
        read = [coerce(item, item_default, what) for item in items]
        return tuple(read) if isinstance(default, tuple) else read
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
        raise ConfigError(f"{what} must be true or false, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, bool):
            raise ConfigError(f"{what} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            if isinstance(value, str):
                return int(value.strip())
            number = float(value)
            if not math.isfinite(number) or int(number) != number:
                raise ValueError
            return int(number)
        except (TypeError, ValueError):
            raise ConfigError(f"{what} must be an integer, got {value!r}") from None
    if isinstance(default, float):
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{what} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{what} must be a finite number, got {value!r}")
        return number
    if default is None or isinstance(default, str):
        if value is None and default is None:
            return None
        if not isinstance(value, str):
            raise ConfigError(f"{what} must be text, got {value!r}")
        return value
    return value


class Measure:
    """One registered measure. Subclass it in one module and register an instance with
    :func:`semwh.measures.register`; override what differs from the defaults.

    Class attributes:
        name: Stored in ``results.measure`` and typed on the command line.
        label: Axis label of figures and table titles.
        summary: One line for ``--help`` and ``semwh analyze measures``.
        options_type: The frozen options dataclass (derived from :class:`Options`).
        inputs: :data:`FEATURES` or :data:`SIMILARITIES`.
        chance: The statistic's value under no relation (None: it depends on the data).
        direction: ``greater``: larger values mean more similar spaces.
        version: Algorithm version recorded with each result; bump it when a change to the
            code can change a stored number.
        subject_version: The version against a target with subjects (similarity measures).
        sweep_settings: Maps names of settings shared by several measures (a sweep's,
            a grid's: ``--method``, ``--regression-distance``...) to option fields; default
            none (a family gives a measure's own options by measure: ``-o NAME.OPT=VALUE``).
        p_value_rule: Computes the p-value from the statistic and its null.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    summary: ClassVar[str] = ""
    options_type: ClassVar[type[Options]] = Options
    inputs: ClassVar[str] = FEATURES
    chance: ClassVar[float | None] = None
    direction: ClassVar[str] = "greater"
    version: ClassVar[int] = 1
    subject_version: ClassVar[int | None] = None
    sweep_settings: ClassVar[Mapping[str, str] | None] = None

    # -- options ---------------------------------------------------------------------------

    def settings_map(self) -> dict[str, str]:
        """Shared setting name -> option field of this measure."""
        if self.sweep_settings is not None:
            return dict(self.sweep_settings)
        return {}

    def defaults(self) -> dict[str, Any]:
        """Each own option's default value."""
        out = {}
        for f in own_fields(self.options_type):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
        return out

    def make_options(
        self,
        *,
        permutations: int = 0,
        seed: int | None = None,
        bootstrap: int = 0,
        device: str = "cpu",
        bootstrap_seed: int | None = None,
        **own: Any,
    ) -> Options:
        """Validated options from the measure's own fields (unknown ones refused; None
        stands for an option's default). ``bootstrap_seed`` is kept only with a bootstrap.

        Raises:
            ConfigError: An unknown option or a bad value.
        """
        self.check_own(own)
        bootstrap = validate.check_count(bootstrap, "bootstrap resamples")
        if bootstrap and not self.has_bootstrap:
            raise ConfigError(f"{self.name} has no bootstrap interval (use --bootstrap 0)")
        common = dict(
            permutations=validate.check_count(permutations, "permutations"),
            seed=check_seed(seed),
            bootstrap=bootstrap,
            device=check_device(device),
        )
        parent = check_seed(bootstrap_seed)
        made = self.build(common, {k: v for k, v in own.items() if v is not None})
        if parent is not None and bootstrap:
            made = dataclasses.replace(made, bootstrap_seed=parent)
        return made

    def build(self, common: dict[str, Any], own: dict[str, Any]) -> Options:
        """The options object from checked common fields and the given own options.

        The default converts each value to the type of its field's default (text from the
        command line included) and builds the dataclass, whose ``__post_init__`` may check
        further; measures with richer rules override it.
        """
        defaults = self.defaults()
        values = {
            k: coerce(own.get(k, v), v, f"{self.name} option {k}") for k, v in defaults.items()
        }
        return self.options_type(test=self.name, **common, **values)

    def read_text(self, own: Mapping[str, Any]) -> dict[str, Any]:
        """``own`` with each text value (from the command line) read in the type of its
        option's default (:func:`coerce`); other values as given."""
        defaults = self.defaults()
        return {
            k: coerce(v, defaults[k], f"{self.name} option {k}") if isinstance(v, str) else v
            for k, v in own.items()
        }

    def check_own(self, own: Mapping[str, Any]) -> dict[str, Any]:
        """The measure's defaults, after refusing any option in ``own`` it does not have.

        Raises:
            ConfigError: An unknown option, naming the measure's options.
        """
        defaults = self.defaults()
        unknown = sorted(set(own) - set(defaults))
        if unknown:
            known = ", ".join(defaults) or "none"
            raise ConfigError(
                f"{self.name} has no option {', '.join(unknown)} (its options: {known})"
            )
        return defaults

    def options_from(
        self,
        settings: Mapping[str, Any],
        *,
        permutations: int = 0,
        seed: int | None = None,
        bootstrap: int = 0,
        device: str = "cpu",
        bootstrap_seed: int | None = None,
    ) -> Options:
        """Options from settings shared by several measures: this measure takes the ones
        its :meth:`settings_map` names and ignores the others."""
        own = {
            field: settings[name] for name, field in self.settings_map().items() if name in settings
        }
        return self.make_options(
            permutations=permutations,
            seed=seed,
            bootstrap=bootstrap,
            device=device,
            bootstrap_seed=bootstrap_seed,
            **own,
        )

    def stored_options(
        self,
        settings: Mapping[str, Any],
        *,
        permutations: int,
        seed: int | None,
        bootstrap: int,
        bootstrap_seed: int | None = None,
    ) -> Options:
        """The options a stored result was computed with, from its ``options`` column (and
        its ``seed``, ``bootstrap`` and ``bootstrap_seed``)."""
        own = {k: v for k, v in settings.items() if k in self.defaults()}
        return self.make_options(
            permutations=permutations,
            seed=seed,
            bootstrap=bootstrap,
            bootstrap_seed=bootstrap_seed,
            **own,
        )

    @property
    def has_bootstrap(self) -> bool:
        """Whether ``--bootstrap`` gives this measure a concept interval."""
        return False

    def version_for(self, target: str | None) -> int:
        """The algorithm version of a result (``target``: how space B is compared)."""
        if target is not None and target.startswith("subjects") and self.subject_version:
            return self.subject_version
        return self.version

    # -- numbers ---------------------------------------------------------------------------

    def statistic(self, spec: ComparisonSpec, allocate: Allocate | None = None) -> dict[str, Any]:
        """The numbers of one spec: ``statistic`` and, with permutations, ``p_value`` and
        ``null``; optionally ``n_pairs``, ``ci_low``/``ci_high``, ``extra`` and ``device``.

        The default computes :meth:`value` and the null of :meth:`null` over every
        permutation.
        """
        numbers: dict[str, Any] = {"statistic": float(self.value(spec)), "device": "cpu"}
        n = spec.options.permutations
        if n > 0:
            null = self.null(spec, 0, n)
            numbers["null"] = null
            numbers["p_value"] = float(self.p_value(numbers["statistic"], null))
        return numbers

    def value(self, spec: ComparisonSpec) -> float:
        """The statistic of ``spec.a`` against ``spec.b`` (rows: ``spec.concept_ids``)."""
        raise NotImplementedError(f"measure {self.name!r} defines no statistic")

    def null(self, spec: ComparisonSpec, start: int, stop: int) -> np.ndarray:
        """Null statistics of permutations ``start..stop-1`` (blocks concatenate exactly).

        The default relabels B's concepts with :func:`permutations_of` and computes
        :meth:`value` of each relabelling.
        """
        out = []
        for order in permutations_of(spec, start, stop):
            out.append(
                self.value(
                    dataclasses.replace(
                        spec,  # type: ignore[type-var]
                        b=spec.b[order],
                    )
                )
            )
        return np.asarray(out, dtype=np.float64)

    def p_value(self, statistic: float, null: np.ndarray) -> float:
        """The permutation p-value, (1 + #{null >= statistic}) / (1 + n) by default."""
        return float(permutation_p_value(statistic, null))

    def weighted(self, spec: ComparisonSpec) -> WeightedStatistic:
        """The statistic as a function of concept counts (paired differences).

        Raises:
            ConfigError: The measure has no such form (differences are refused for it).
        """
        raise ConfigError(f"difference tests do not support {self.name} results")

    def difference_refusal(self) -> str | None:
        """Why paired differences refuse this measure's results (None: they support it)."""
        if type(self).weighted is Measure.weighted:
            return (
                f"difference tests do not support {self.name} results (the measure defines no "
                "statistic of concept weights)"
            )
        return None

    def resampled(self, spec: ComparisonSpec, n_bootstrap: int, seed: int) -> np.ndarray:
        """The statistic on ``n_bootstrap`` concept resamples drawn from ``seed`` (a peak
        layer's depth interval): the same resamples for every spec of the same concepts.

        Resample ``t`` is the ``t``-th ``rng.integers(0, n, size=n)`` of
        ``numpy.random.default_rng(seed)`` (the draws of the RSA and 2 vs 2 concept
        bootstrap). This default takes each concept drawn once: the distinct concepts of the
        resample, in concept order. A copy would be its own nearest neighbour, a kernel entry
        equal to its own norm or a training row equal to the held-out one: agreement that
        says nothing about the structure. A resample the measure cannot take (fewer than
        four distinct concepts, a degenerate input, options that need more concepts) is NaN,
        which the interval leaves out.
        """
        from semwh.analyze import MIN_CONCEPTS
        from semwh.errors import DegenerateInputError

        bare = dataclasses.replace(  # type: ignore[type-var]
            spec, options=dataclasses.replace(spec.options, permutations=0, seed=None)
        )
        values = np.full(n_bootstrap, np.nan)
        for t, drawn in enumerate(resample_rows(spec.n_concepts, n_bootstrap, seed)):
            rows = np.unique(drawn)
            if rows.size < MIN_CONCEPTS:
                continue
            resample = dataclasses.replace(  # type: ignore[type-var]
                bare,
                a=spec.a[rows],
                b=spec.b[rows],
                concept_ids=tuple(spec.concept_ids[i] for i in rows),
            )
            try:
                values[t] = self.value(resample)
            except (DegenerateInputError, ConfigError):
                continue
        return values


def permutations_of(spec: ComparisonSpec, start: int, stop: int) -> list[np.ndarray]:
    """Permutations ``start..stop-1`` of the concepts from the spec's seed: the stream of
    :func:`semwh.analyze.permutation.permutation_stream` every measure's null relabels B by
    (the same relabellings for every spec of the same seed and concepts)."""
    from semwh.analyze.permutation import check_block, make_rng, permutation_stream

    opts = spec.options
    start, stop = check_block(start, stop, opts.permutations)
    rng, _ = make_rng(opts.seed if opts.seed is not None else 0)
    return [p for batch in permutation_stream(rng, spec.n_concepts, start, stop, 64) for p in batch]


def resample_rows(n: int, n_bootstrap: int, seed: int) -> list[np.ndarray]:
    """``n_bootstrap`` resamples of ``n`` rows with replacement, drawn from ``seed``."""
    from semwh.analyze.design import draw_rows

    rng = np.random.default_rng(seed)
    return [draw_rows(rng, n) for _ in range(n_bootstrap)]
