"""Option values of the analyses, checked before any data is loaded."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from semwh import validate
from semwh.analyze import DISTANCES, RSA_METHODS, SIMILARITY_METRICS, TIE_TOL
from semwh.analyze.cka import CKA_ESTIMATORS
from semwh.analyze.knn import DEFAULT_K
from semwh.analyze.regression import DEFAULT_PENALTIES, REGRESSION_DISTANCES, REGRESSION_TIE_TOL
from semwh.analyze.subjects import check_normalise
from semwh.errors import ConfigError

TESTS = ("rsa", "2v2")
#: The vector-based measures (table ``results_measures``).
MEASURES = ("cka", "knn", "reg2v2")
#: Everything a sweep can run over its layer and word spaces.
SWEEP_TESTS = (*TESTS, *MEASURES)
SIMILARITIES = SIMILARITY_METRICS
DEVICES = ("cpu", "cuda")
#: ``auto``: cuda when a CUDA device is available, else cpu (resolved when options are made).
AUTO_DEVICE = "auto"


def check_choice(value: str, choices: Sequence[str], what: str) -> str:
    """Return ``value`` if it is one of ``choices``, else raise naming the valid ones."""
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r} (choose {', '.join(choices)})")
    return value


#: Seeds are stored as signed 64-bit integers.
MAX_SEED = 2**63 - 1


def check_seed(seed: int | None) -> int | None:
    """Return ``seed`` (None: draw one later) if it is an integer from 0 to 2**63 - 1.

    Every analysis (rsa, 2v2, cka, knn, reg2v2, diff, sweep, grid, peak) checks its seed
    here before anything is loaded, computed or stored.
    """
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(
            f"seed must be 0 or more and below 2**63 (at most {MAX_SEED}), got {seed!r}"
        )
    return int(seed)


def check_count(value: int, what: str) -> int:
    """A count of 0 or more (:func:`semwh.validate.check_count`)."""
    return validate.check_count(value, what)


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
class ComparisonOptions:
    """Everything that selects a comparison's numbers, apart from the two spaces.

    Attributes:
        test: ``rsa`` or ``2v2``.
        similarity: How concept similarity matrices are built.
        method: RSA correlation of the two upper triangles (RSA only).
        distance: Row distance of the 2 vs 2 test (2 vs 2 only).
        permutations: Size of the permutation null (0: no p-value from permutations).
        seed: Seed of the permutations and bootstrap; None draws one when needed.
        bootstrap: Bootstrap resamples of the concepts for a 95% interval (0: none).
        device: Where the matrices are computed (``auto`` resolved); never changes which
            numbers are stored.
        tie_tol: 2 vs 2 tie tolerance (2 vs 2 only; None for RSA).
        normalise: How each subject's RDM of a target with subjects is rescaled before it is
            compared (``none``, ``zscore`` or ``rank`` of its off-diagonal entries); only
            ``none`` applies to a target without subjects.
    """

    test: str
    similarity: str = "pearson"
    method: str | None = None
    distance: str | None = None
    permutations: int = 0
    seed: int | None = None
    bootstrap: int = 0
    device: str = "cpu"
    tie_tol: float | None = None
    normalise: str = "none"

    @classmethod
    def make(
        cls,
        test: str,
        *,
        similarity: str = "pearson",
        method: str = "spearman",
        distance: str = "pearson",
        permutations: int = 0,
        seed: int | None = None,
        bootstrap: int = 0,
        device: str = "cpu",
        tie_tol: float = TIE_TOL,
        normalise: str = "none",
    ) -> ComparisonOptions:
        """Validated options; the metric that does not apply to ``test`` is dropped."""
        check_choice(test, TESTS, "test")
        check_choice(similarity, SIMILARITIES, "similarity metric")
        if test == "rsa":
            check_choice(method, RSA_METHODS, "RSA method")
        else:
            check_choice(distance, DISTANCES, "2 vs 2 distance")
        seed = check_seed(seed)
        if not (isinstance(tie_tol, int | float) and 0 <= float(tie_tol) < 1):
            raise ConfigError(f"2 vs 2 tie tolerance must be in [0, 1), got {tie_tol!r}")
        return cls(
            test=test,
            similarity=similarity,
            method=method if test == "rsa" else None,
            distance=distance if test == "2v2" else None,
            permutations=check_count(permutations, "permutations"),
            seed=seed,
            bootstrap=check_count(bootstrap, "bootstrap resamples"),
            device=check_device(device),
            tie_tol=float(tie_tol) if test == "2v2" else None,
            normalise=check_normalise(normalise),
        )

    @property
    def metric(self) -> str:
        """The test-specific metric: the RSA method or the 2 vs 2 distance."""
        value = self.method if self.test == "rsa" else self.distance
        assert value is not None
        return value

    @property
    def needs_seed(self) -> bool:
        return self.permutations > 0 or self.bootstrap > 0


@dataclass(frozen=True)
class MeasureOptions:
    """Everything that selects a vector-based measure's numbers, apart from the two spaces.

    Attributes:
        test: ``cka``, ``knn`` or ``reg2v2`` (the measure).
        estimator: CKA estimator, ``unbiased`` or ``biased`` (CKA only).
        k: Neighbours per concept (mutual k-NN only).
        distance: Row distance of regression 2 vs 2, ``cosine`` or ``pearson``.
        penalties: Ridge penalty grid of regression 2 vs 2, in multiples of tr(Xc Xc')/n.
        tie_tol: Regression 2 vs 2 tie tolerance.
        permutations: Size of the permutation null (0: no p-value).
        seed: Seed of the permutations; None draws one when needed.
        device: Kept for the backends; the measures run on the CPU.
        bootstrap: Always 0 (no bootstrap interval for these measures).
    """

    test: str
    estimator: str | None = None
    k: int | None = None
    distance: str | None = None
    penalties: tuple[float, ...] | None = None
    tie_tol: float | None = None
    permutations: int = 0
    seed: int | None = None
    device: str = "cpu"
    bootstrap: int = 0

    @classmethod
    def make(
        cls,
        test: str,
        *,
        estimator: str = "unbiased",
        k: int = DEFAULT_K,
        distance: str = "cosine",
        penalties: Sequence[float] = DEFAULT_PENALTIES,
        tie_tol: float = REGRESSION_TIE_TOL,
        permutations: int = 0,
        seed: int | None = None,
        device: str = "cpu",
    ) -> MeasureOptions:
        """Validated options; the options that do not apply to ``test`` are dropped."""
        check_choice(test, MEASURES, "measure")
        seed = check_seed(seed)
        fields: dict[str, object] = {}
        if test == "cka":
            fields["estimator"] = check_choice(estimator, CKA_ESTIMATORS, "CKA estimator")
        elif test == "knn":
            if (
                isinstance(k, bool)
                or not isinstance(k, int | float)
                or not math.isfinite(k)
                or int(k) != k
                or k < 1
            ):
                raise ConfigError(f"k must be an integer of 1 or more, got {k!r}")
            fields["k"] = int(k)
        else:
            fields["distance"] = check_choice(
                distance, REGRESSION_DISTANCES, "regression 2 vs 2 distance"
            )
            grid = tuple(float(p) for p in penalties)
            if not grid or not all(p > 0 for p in grid):
                raise ConfigError(
                    f"ridge penalties must be positive numbers, got {list(penalties)!r}"
                )
            fields["penalties"] = grid
            if not (isinstance(tie_tol, int | float) and 0 <= float(tie_tol) < 1):
                raise ConfigError(f"tie tolerance must be in [0, 1), got {tie_tol!r}")
            fields["tie_tol"] = float(tie_tol)
        return cls(
            test=test,
            permutations=check_count(permutations, "permutations"),
            seed=seed,
            device=check_device(device),
            **fields,  # type: ignore[arg-type]
        )

    @property
    def variant(self) -> str:
        """The readable label stored with a result: estimator, ``k=K`` or distance."""
        if self.test == "cka":
            return str(self.estimator)
        if self.test == "knn":
            return f"k={self.k}"
        return str(self.distance)

    @property
    def metric(self) -> str:
        return self.variant

    def settings(self) -> dict[str, object]:
        """The measure's own options (hashed into the reuse key)."""
        out: dict[str, object] = {"measure": self.test}
        if self.test == "cka":
            out["estimator"] = self.estimator
        elif self.test == "knn":
            out["k"] = self.k
        else:
            out["distance"] = self.distance
            out["penalties"] = list(self.penalties or ())
            out["tie_tol"] = self.tie_tol
        return out

    @property
    def needs_seed(self) -> bool:
        return self.permutations > 0


#: The settings :func:`options_for` takes, with their defaults: the union of every test's.
SETTINGS: dict[str, object] = {
    "similarity": "pearson",
    "method": "spearman",
    "distance": "pearson",
    "tie_tol": TIE_TOL,
    "normalise": "none",
    "estimator": "unbiased",
    "k": DEFAULT_K,
    "regression_distance": "cosine",
    "penalties": DEFAULT_PENALTIES,
}


def options_for(
    test: str,
    *,
    permutations: int = 0,
    seed: int | None = None,
    bootstrap: int = 0,
    device: str = "cpu",
    **settings: object,
) -> ComparisonOptions | MeasureOptions:
    """Validated options of ``test`` from settings shared by several tests (a sweep's, a
    grid's): each test takes the settings that apply to it and ignores the others.

    Raises:
        ConfigError: An unknown test, setting or option value.
    """
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)} of {test}")
    values = {**SETTINGS, **settings}
    check_choice(test, SWEEP_TESTS, "test")
    if test in MEASURES:
        return MeasureOptions.make(
            test,
            estimator=values["estimator"],  # type: ignore[arg-type]
            k=values["k"],  # type: ignore[arg-type]
            distance=values["regression_distance"],  # type: ignore[arg-type]
            penalties=values["penalties"],  # type: ignore[arg-type]
            permutations=permutations,
            seed=seed,
            device=device,
        )
    return ComparisonOptions.make(
        test,
        similarity=values["similarity"],  # type: ignore[arg-type]
        method=values["method"],  # type: ignore[arg-type]
        distance=values["distance"],  # type: ignore[arg-type]
        tie_tol=values["tie_tol"],  # type: ignore[arg-type]
        normalise=values["normalise"],  # type: ignore[arg-type]
        permutations=permutations,
        seed=seed,
        bootstrap=bootstrap,
        device=device,
    )
