"""`semwh analyze rsa|2v2|cka|knn|reg2v2|diff|recovery|image-scores|sweep|grid|peak`: run
analyses, print stored rows.

The analysis library (scipy, the runs package) is imported inside the commands, so that every
other command starts without it.
"""

from __future__ import annotations

from typing import Any

import typer

from semwh.cli.printing import bars, print_table
from semwh.cli.state import err_console, state
from semwh.errors import ConfigError

app = typer.Typer(
    help=(
        "Compare spaces (RSA, 2 vs 2, linear CKA, mutual k-NN, regression 2 vs 2), test the "
        "difference of two results, test recovery (1 vs 2), score each image against the "
        "concept centroids, sweep models and word spaces."
        "\n\nExample: semwh analyze sweep --models efficientnet_lite0 --words glove-6b-50d"
    ),
    no_args_is_help=True,
)

_A = typer.Option(..., "--a", help="First space (e.g. a layer MODEL/LAYER).")
_B = typer.Option(..., "--b", help="Second space (e.g. a word space).")
_PERMUTATIONS = typer.Option(0, "--permutations", "-n", help="Permutations for the p-value.")
_SEED = typer.Option(None, "--seed", help="Seed of permutations and bootstrap (default: drawn).")
_SIMILARITY = typer.Option(
    "pearson", "--similarity", help="Concept similarity: pearson, spearman or cosine."
)
_BOOTSTRAP = typer.Option(0, "--bootstrap", help="Bootstrap resamples for a 95% interval.")
_BOOTSTRAP_SEED = typer.Option(
    None,
    "--bootstrap-seed",
    help="Seed of the bootstrap's resamples (default: --seed); a sweep cell's "
    "results.bootstrap_seed reproduces its interval.",
)
_DEVICE = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto (cuda when available).")
_MEMORY = typer.Option(
    None,
    "--memory",
    help="Memory the analysis may use, e.g. 16G (default: the available RAM); the similarity "
    "matrices are streamed from the warehouse's tmp/ when they do not fit besides the work.",
)
_FORCE = typer.Option(
    False, "--force", help="Recompute a stored identical result (a new row; the old one stays)."
)
_TIE_TOL = typer.Option(
    1e-10, "--tie-tol", help="2 vs 2: a pair is correct only by more than this margin."
)
_NORMALISE = typer.Option(
    "none",
    "--normalise",
    help="RDM targets: rescale each subject's matrix before comparing: none, zscore or rank "
    "(of its off-diagonal entries); recorded with the result.",
)

_LEVEL = typer.Option(
    "concept",
    "--level",
    help="concept (concept means) or image (the stimuli both spaces have: layers, and "
    "spaces ingested with --level image).",
)
_PERMUTE = typer.Option(
    None,
    "--permute",
    help="Image level: concepts (each concept's images move together; the default when a "
    "concept has two or more images), images (all free) or within-concept.",
)
_BOOTSTRAP_OVER = typer.Option(
    None,
    "--bootstrap-over",
    help="Image level: resample concepts (with all their images; the default as for "
    "--permute) or images.",
)

RECOVERY_SUMMARY = ("result_id", "layer", "space_b", "n_images", "accuracy", "p_value")
#: Exit code of `analyze recovery` when the test applies to none of the layers (not an
#: error: 1 is; a sweep or pipeline carries on).
EXIT_NOT_APPLICABLE = 3
UNCORRECTED = (
    "p_value is uncorrected: FDR belongs to a sweep's family (`semwh analyze sweep`, "
    "then sweep_results)"
)


def _items(level: str, permute: str | None, bootstrap_over: str | None) -> Any:
    from semwh.runs.levels import Items

    return Items(level, permute, bootstrap_over)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _compare(
    ctx: typer.Context,
    a: str,
    b: str,
    test: str,
    memory: str | None = None,
    own: dict[str, Any] | None = None,
    **options: Any,
) -> None:
    """Run one stored comparison of any registered measure and print its row (the memory
    plan of a measure of similarity matrices first). ``own``: the measure's own options by
    name, kept apart from the command's (an option may be called ``seed`` or ``a``)."""
    from semwh import measures, runs
    from semwh.resources import parse_bytes
    from semwh.runs.options import MEASURES, TESTS
    from semwh.runs.result_rows import vertical

    def show(plan: Any) -> None:
        for line in plan.lines():
            err_console.print(line, highlight=False)

    measure = measures.get(test)
    common: dict[str, Any] = {
        key: options.pop(key)
        for key in ("permutations", "seed", "bootstrap", "device", "force")
        if key in options
    }
    if options.get("bootstrap_seed") is not None:
        common["bootstrap_seed"] = options["bootstrap_seed"]
    options.pop("bootstrap_seed", None)
    common["items"] = _items(
        options.pop("level", "concept"), options.pop("permute", None),
        options.pop("bootstrap_over", None),
    )  # fmt: skip
    wh = state(ctx).warehouse()
    extra: dict[str, Any] = {}
    if measure.inputs == measures.SIMILARITIES:
        extra = {"memory": None if memory is None else parse_bytes(memory), "on_plan": show}
    row = runs.compare_measure(
        wh, a, b, test, options={**options, **(own or {})}, **common, **extra
    )
    if test in MEASURES:
        title = f"results_measures ({test})"
    elif test in TESTS:
        title = f"results_{test}"
    else:
        title = f"results ({test})"
    table = runs.comparison_table([row])
    print_table(vertical(table.drop_columns(["p_fdr"])), title=title)
    if getattr(row, "target", None):
        _print_subjects(wh, test, row)
    err_console.print(UNCORRECTED, highlight=False)


@app.command("compare")
def compare(
    ctx: typer.Context,
    a: str = _A,
    b: str = _B,
    measure: str = typer.Option(
        ..., "--measure", "-m", help="A registered measure (semwh analyze measures lists them)."
    ),
    option: list[str] | None = typer.Option(
        None,
        "--option",
        "-o",
        help="One of the measure's own options, NAME=VALUE (repeatable), e.g. -o k=20.",
    ),
    permutations: int = _PERMUTATIONS,
    seed: int | None = _SEED,
    bootstrap: int = typer.Option(
        0, "--bootstrap", help="Bootstrap resamples for a 95% interval (measures that have one)."
    ),
    bootstrap_seed: int | None = _BOOTSTRAP_SEED,
    device: str = _DEVICE,
    force: bool = _FORCE,
    memory: str | None = _MEMORY,
    level: str = _LEVEL,
    permute: str | None = _PERMUTE,
    bootstrap_over: str | None = _BOOTSTRAP_OVER,
) -> None:
    """Any registered measure between two spaces over their shared concepts; stores and
    prints the result. `semwh analyze rsa|2v2|cka|knn|reg2v2` are spellings of it.

    Example: semwh analyze compare -m knn --a efficientnet_lite0/blocks.15 --b glove -o k=20
    """
    _compare(
        ctx,
        a,
        b,
        measure,
        memory,
        own=_assignments(option),
        permutations=permutations,
        seed=seed,
        bootstrap=bootstrap,
        bootstrap_seed=bootstrap_seed,
        device=device,
        force=force,
        level=level,
        permute=permute,
        bootstrap_over=bootstrap_over,
    )


@app.command("measures")
def list_measures() -> None:
    """The registered measures (built in and from installed plugins), their inputs,
    chance level, version and options with their defaults.

    Example: semwh analyze measures  (then: semwh analyze compare --measure NAME ...)
    """
    import pyarrow as pa

    from semwh import measures

    rows = [{k: (None if v is None else str(v)) for k, v in r.items()} for r in measures.describe()]
    print_table(pa.Table.from_pylist(rows), title="measures")


def _print_subjects(wh: Any, test: str, row: Any) -> None:
    """A result against a target with subjects: its subjects, ceiling and inference."""
    from semwh.runs.result_rows import subject_tables

    with wh.session() as session:
        subjects, inference = subject_tables(session, test, row.result_id)
    print_table(subjects, title=f"per subject ({row.target})")
    if (row.n_subjects or 0) < 2:
        err_console.print(
            "one subject: no noise ceiling and no inference over subjects (they need at "
            "least two subjects); the p-value generalises over concepts only",
            highlight=False,
        )
    elif row.ceiling_lower is not None:
        err_console.print(
            f"noise ceiling ({test}, same comparator and concepts): "
            f"[{row.ceiling_lower:.4g}, {row.ceiling_upper:.4g}]",
            highlight=False,
        )
    print_table(inference, title="inference (units: what each generalises over)")


@app.command("rsa")
def rsa(
    ctx: typer.Context,
    a: str = _A,
    b: str = _B,
    permutations: int = _PERMUTATIONS,
    seed: int | None = _SEED,
    similarity: str = _SIMILARITY,
    method: str = typer.Option(
        "spearman", "--method", help="Correlation of the triangles: spearman, pearson, kendall."
    ),
    bootstrap: int = _BOOTSTRAP,
    bootstrap_seed: int | None = _BOOTSTRAP_SEED,
    device: str = _DEVICE,
    force: bool = _FORCE,
    memory: str | None = _MEMORY,
    normalise: str = _NORMALISE,
    level: str = _LEVEL,
    permute: str | None = _PERMUTE,
    bootstrap_over: str | None = _BOOTSTRAP_OVER,
) -> None:
    """RSA between two spaces over their shared concepts; stores and prints the result.

    Against an RDM (semwh ingest rdm) the statistic is the mean over subjects of the RSA with
    each subject's matrix, printed with each subject's value, the noise ceiling on the same
    scale and tests over subjects.

    Example: semwh analyze rsa --a efficientnet_lite0/blocks.15 --b glove-6b-50d -n 1000 --seed 1
    """
    _compare(
        ctx,
        a,
        b,
        "rsa",
        memory,
        similarity=similarity,
        method=method,
        permutations=permutations,
        seed=seed,
        bootstrap=bootstrap,
        bootstrap_seed=bootstrap_seed,
        device=device,
        force=force,
        normalise=normalise,
        level=level,
        permute=permute,
        bootstrap_over=bootstrap_over,
    )


@app.command("2v2")
def two_vs_two(
    ctx: typer.Context,
    a: str = _A,
    b: str = _B,
    permutations: int = _PERMUTATIONS,
    seed: int | None = _SEED,
    similarity: str = _SIMILARITY,
    distance: str = typer.Option("pearson", "--distance", help="Row distance: pearson, cosine."),
    tie_tol: float = _TIE_TOL,
    bootstrap: int = _BOOTSTRAP,
    bootstrap_seed: int | None = _BOOTSTRAP_SEED,
    device: str = _DEVICE,
    force: bool = _FORCE,
    memory: str | None = _MEMORY,
    normalise: str = _NORMALISE,
    level: str = _LEVEL,
    permute: str | None = _PERMUTE,
    bootstrap_over: str | None = _BOOTSTRAP_OVER,
) -> None:
    """2 vs 2 test between two spaces over their shared concepts; stores and prints it.

    Against an RDM the accuracy is the mean over subjects, as for rsa.

    Example: semwh analyze 2v2 --a efficientnet_lite0/blocks.15 --b glove-6b-50d -n 1000
    """
    _compare(
        ctx,
        a,
        b,
        "2v2",
        memory,
        similarity=similarity,
        distance=distance,
        tie_tol=tie_tol,
        permutations=permutations,
        seed=seed,
        bootstrap=bootstrap,
        bootstrap_seed=bootstrap_seed,
        device=device,
        force=force,
        normalise=normalise,
        level=level,
        permute=permute,
        bootstrap_over=bootstrap_over,
    )


_ESTIMATOR = typer.Option(
    "unbiased", "--estimator", help="CKA estimator: unbiased (debiased HSIC) or biased."
)
_K = typer.Option(10, "--k", help="Mutual k-NN: neighbours per concept.")
_REG_DISTANCE = typer.Option(
    "cosine", "--regression-distance", help="Regression 2 vs 2 row distance: cosine, pearson."
)
_PENALTIES = typer.Option(
    None,
    "--penalties",
    help="Regression 2 vs 2 ridge grid, comma-separated multiples of tr(Xc Xc')/n "
    "(default 1e-3,1e-2,...,1e3).",
)


def _grid(text: str | None) -> dict[str, Any]:
    from semwh.errors import ConfigError

    if text is None:
        return {}
    try:
        return {"penalties": [float(part) for part in _split(text)]}
    except ValueError:
        raise ConfigError(
            f"--penalties {text!r}: expected comma-separated numbers (e.g. 0.01,1,100)"
        ) from None


@app.command("cka")
def cka(
    ctx: typer.Context,
    a: str = _A,
    b: str = _B,
    permutations: int = _PERMUTATIONS,
    seed: int | None = _SEED,
    estimator: str = _ESTIMATOR,
    device: str = typer.Option(
        "cpu", "--device", help="Where the permutation null runs: cpu, cuda, cuda:N or auto."
    ),
    force: bool = _FORCE,
    level: str = _LEVEL,
    permute: str | None = _PERMUTE,
) -> None:
    """Linear CKA between two spaces over their shared concepts; stores and prints it.

    Example: semwh analyze cka --a efficientnet_lite0/blocks.15 --b glove-6b-50d -n 1000
    """
    _compare(
        ctx,
        a,
        b,
        "cka",
        estimator=estimator,
        permutations=permutations,
        seed=seed,
        device=device,
        force=force,
        level=level,
        permute=permute,
    )


@app.command("knn")
def knn(
    ctx: typer.Context,
    a: str = _A,
    b: str = _B,
    permutations: int = _PERMUTATIONS,
    seed: int | None = _SEED,
    k: int = _K,
    force: bool = _FORCE,
    level: str = _LEVEL,
    permute: str | None = _PERMUTE,
) -> None:
    """Mutual k-nearest-neighbour alignment of two spaces; stores and prints it.

    Example: semwh analyze knn --a efficientnet_lite0/blocks.15 --b glove-6b-50d --k 10 -n 1000
    """
    _compare(
        ctx,
        a,
        b,
        "knn",
        k=k,
        permutations=permutations,
        seed=seed,
        force=force,
        level=level,
        permute=permute,
    )


@app.command("reg2v2")
def reg2v2(
    ctx: typer.Context,
    a: str = _A,
    b: str = _B,
    permutations: int = _PERMUTATIONS,
    seed: int | None = _SEED,
    distance: str = _REG_DISTANCE,
    penalties: str | None = _PENALTIES,
    tie_tol: float = _TIE_TOL,
    force: bool = _FORCE,
    level: str = _LEVEL,
    permute: str | None = _PERMUTE,
) -> None:
    """Regression 2 vs 2: ridge from A predicts B, two concepts left out per pair.

    Example: semwh analyze reg2v2 --a efficientnet_lite0/blocks.15 --b glove-6b-50d -n 100
    """
    _compare(
        ctx,
        a,
        b,
        "reg2v2",
        distance=distance,
        tie_tol=tie_tol,
        permutations=permutations,
        seed=seed,
        force=force,
        **_grid(penalties),
        level=level,
        permute=permute,
    )


@app.command("diff")
def diff(
    ctx: typer.Context,
    first: str = typer.Argument(..., help="First result, TEST:ID (e.g. 2v2:17)."),
    second: str = typer.Argument(..., help="Second result over the same concepts, TEST:ID."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Paired concept resamples."),
    permutations: int = typer.Option(1000, "--permutations", "-n", help="Sign flips for p."),
    level: float = typer.Option(0.95, "--level", help="Confidence level of the interval."),
    seed: int | None = _SEED,
    force: bool = _FORCE,
) -> None:
    """Difference of two stored results over the same concepts (first minus second).

    A paired concept-bootstrap interval and a two-sided sign-flip permutation p-value of the
    per-concept jackknife differences; tests rsa, 2v2, cka and reg2v2. Two results against
    the same RDM's subjects also get paired tests over subjects (t, Wilcoxon, sign flip).
    (To compare every result of this warehouse with another warehouse's, use `semwh diff`.)

    Example: semwh analyze diff 2v2:17 2v2:9 --bootstrap 1000 -n 1000 --seed 3
    """
    from semwh.runs.difference import diff as run_diff
    from semwh.runs.difference import diff_table
    from semwh.runs.result_rows import vertical

    row = run_diff(
        state(ctx).warehouse(),
        first,
        second,
        bootstrap=bootstrap,
        permutations=permutations,
        level=level,
        seed=seed,
        force=force,
    )
    print_table(vertical(diff_table([row])), title="results_diff")
    from semwh.runs.result_rows import subject_tables

    wh = state(ctx).warehouse()
    with wh.session() as session:
        _, inference = subject_tables(session, "diff", row.result_id)
    if inference.num_rows:
        print_table(inference, title="paired over subjects (units: subjects)")
    err_console.print(UNCORRECTED, highlight=False)


@app.command("recovery")
def recovery(
    ctx: typer.Context,
    model: str = typer.Option(..., "--model", help="Vision model with stored predictions."),
    words: str = typer.Option(..., "--words", help="Word space."),
    layers: str | None = typer.Option(
        None, "--layers", help="Comma-separated layers (default: every layer space)."
    ),
    force: bool = _FORCE,
) -> None:
    """1 vs 2 recovery of misclassified images' true class at each layer of a model.

    The test needs the model's predictions to be concepts of the warehouse: with a lab's own
    concepts that are not the model's classes (no ImageNet-1k class), or no misclassified
    image to test, it stores no rows, prints why on one line, records the reason (query
    recovery_skipped) and exits with code 3, so that a script can tell "does not apply"
    from success (0) and from an error (1). A sweep with --recovery records the same skip
    and carries on.

    Example: semwh analyze recovery --model efficientnet_lite0 --words glove-6b-50d
    """
    from semwh import runs
    from semwh.runs.result_rows import summary_table

    report = runs.recovery(
        state(ctx).warehouse(),
        model,
        words,
        layers=_split(layers) if layers else None,
        force=force,
    )
    if report.rows:
        print_table(
            summary_table(runs.recovery_table(report.rows), RECOVERY_SUMMARY),
            title="results_recovery",
        )
        err_console.print(UNCORRECTED, highlight=False)
    for item in report.skipped:
        err_console.print(
            f"[yellow]skipped:[/yellow] {item.reason} (layers {', '.join(item.layers)}; "
            f"recorded as analysis run {item.analysis_id})",
            highlight=False,
            soft_wrap=True,
        )
    if not report.rows:
        raise typer.Exit(EXIT_NOT_APPLICABLE)


@app.command("image-scores")
def image_scores(
    ctx: typer.Context,
    spaces: list[str] | None = typer.Argument(
        None, help="Spaces with an image level: layers MODEL/LAYER, spaces ingested per image."
    ),
    model: str | None = typer.Option(None, "--model", help="Also every layer of this model."),
    similarity: str = typer.Option(
        "pearson", "--similarity", help="Image-to-centroid similarity: pearson or cosine."
    ),
) -> None:
    """Score each image of a layer against the concept centroids, its own image left out.

    Stores one image_scores row per image and space, keyed by stimulus (replacing the rows
    of that space and similarity): the nearest concept centroid, whether it is the image's
    own concept, the margin over the best other concept and its own concept's rank. Join
    them with per-image lab data: semwh query image_scores_join_csv -p path=rts.csv.

    Example: semwh analyze image-scores --model efficientnet_lite0
    """
    from semwh.runs.exemplars import image_score_table, score_images

    wh = state(ctx).warehouse()
    with bars() as progress:
        runs = score_images(wh, spaces or [], model=model, similarity=similarity, progress=progress)
    print_table(image_score_table(runs), title="image_scores")
    err_console.print(
        "accuracy: share of scored images whose nearest centroid is their own concept's; "
        "n_skipped: images that are the only image of their concept (nothing to score them "
        "against). Rows: semwh query image_scores",
        highlight=False,
        soft_wrap=True,
    )


_TESTS = typer.Option(
    "2v2,rsa",
    "--tests",
    help="Comma-separated measures: 2v2, rsa, cka, knn, reg2v2 or any registered one "
    "(semwh analyze measures).",
)
_MEASURE_OPTIONS = typer.Option(
    None,
    "--option",
    "-o",
    help="An option of one of the --tests measures, MEASURE.OPTION=VALUE (repeatable), e.g. "
    "-o procrustes.centre=false (semwh analyze measures lists them).",
)


def _measure_options(items: list[str] | None) -> dict[str, dict[str, str]]:
    """``["knn.k=5", ...]`` as {measure: {option: text}}."""
    out: dict[str, dict[str, str]] = {}
    for key, value in _assignments(items).items():
        measure, sep, option = key.partition(".")
        if not sep or not measure or not option:
            raise ConfigError(f"-o {key}={value}: expected MEASURE.OPTION=VALUE")
        out.setdefault(measure, {})[option] = value
    return out


def _assignments(items: list[str] | None) -> dict[str, str]:
    """``-o NAME=VALUE`` items as a dict; a name given twice is refused."""
    from semwh.results.named import parse_assignments

    names = [item.partition("=")[0].strip() for item in items or []]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"-o {twice[0]} is given twice: give each option once")
    return parse_assignments(items)


_BACKEND = typer.Option("local", "--backend", "--engine", help="local, or ray (the ray extra).")
_RAY_ADDRESS = typer.Option(
    None, "--ray-address", help="Ray cluster (auto, HOST:6379); default: a small local Ray."
)
_GPUS_PER_TASK = typer.Option(
    0.0, "--gpus-per-actor", help="GPUs per Ray comparison task (with --device cuda)."
)
_PERM_BLOCK = typer.Option(
    None,
    "--perm-block",
    help="Permutations per Ray task for larger nulls (default 250; 0: whole comparisons).",
)


def _mapper(
    backend: str, ray_address: str | None, gpus_per_task: float, perm_block: int | None
) -> Any:
    """The mapper of a backend, resolved (Ray imported, options checked) before a family
    reads anything."""
    from semwh.ray import sweep_mapper

    return sweep_mapper(
        backend, ray_address=ray_address, gpus_per_task=gpus_per_task, perm_block=perm_block
    )


@app.command("sweep")
def sweep(
    ctx: typer.Context,
    models: str = typer.Option(..., "--models", help="Comma-separated vision models."),
    words: str = typer.Option(..., "--words", help="Comma-separated word spaces."),
    tests: str = _TESTS,
    permutations: int = typer.Option(1000, "--permutations", "-n", help="Permutations each."),
    seed: int | None = _SEED,
    no_random: bool = typer.Option(False, "--no-random", help="Skip MODEL-random controls."),
    with_recovery: bool = typer.Option(False, "--recovery", help="Also run 1 vs 2 recovery."),
    tie_tol: float = _TIE_TOL,
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto (cuda when available)."),
    force: bool = _FORCE,
    strict: bool = typer.Option(
        False, "--strict", help="Stop at a degenerate comparison instead of skipping it."
    ),
    backend: str = _BACKEND,
    ray_address: str | None = _RAY_ADDRESS,
    gpus_per_task: float = _GPUS_PER_TASK,
    perm_block: int | None = _PERM_BLOCK,
    estimator: str = _ESTIMATOR,
    k: int = _K,
    regression_distance: str = _REG_DISTANCE,
    penalties: str | None = _PENALTIES,
    diff_random: bool = typer.Option(
        False,
        "--diff-random",
        help="Also test each layer against the same layer of its random control.",
    ),
    normalise: str = _NORMALISE,
    option: list[str] | None = _MEASURE_OPTIONS,
    level: str = _LEVEL,
    permute: str | None = _PERMUTE,
    bootstrap_over: str | None = _BOOTSTRAP_OVER,
    bootstrap: int = typer.Option(
        0,
        "--bootstrap",
        help="Bootstrap resamples of each RSA and 2 vs 2 cell's 95% interval (ci_low, "
        "ci_high); every layer of a model draws the same resamples.",
    ),
) -> None:
    """Every layer of the models against every word space, with FDR over the whole sweep.

    Each cell records the seed it used (results.seed: derived from --seed, the test and both
    spaces) and, with --bootstrap, its bootstrap seed (results.bootstrap_seed: from --seed,
    the model and the target); `semwh analyze rsa|2v2|... --seed SEED [--bootstrap N
    --bootstrap-seed BSEED]` with those values reproduces the cell.

    Example: semwh analyze sweep --models efficientnet_lite0 --words glove-6b-50d --seed 7
    """
    from semwh import runs
    from semwh.runs.result_rows import SUMMARY_COLUMNS, summary_table
    from semwh.runs.sweep import SweepOptions

    options = SweepOptions(
        item_level=level,
        permute=permute,
        resample=bootstrap_over,
        tests=_split(tests),
        permutations=permutations,
        seed=seed,
        include_random=not no_random,
        recovery=with_recovery,
        tie_tol=tie_tol,
        device=device,
        force=force,
        strict=strict,
        estimator=estimator,
        k=k,
        regression_distance=regression_distance,
        control_diffs=diff_random,
        normalise=normalise,
        measure_options=_measure_options(option),
        bootstrap=bootstrap,
        **_grid(penalties),
    )
    mapper = _mapper(backend, ray_address, gpus_per_task, perm_block)
    wh = state(ctx).warehouse()
    with bars() as progress:
        result = runs.sweep(
            wh, _split(models), _split(words), options, progress=progress, mapper=mapper
        )
    # The seeds each cell used: the single command given them reproduces it.
    columns: tuple[str, ...] = (*SUMMARY_COLUMNS, "seed")
    if bootstrap:
        columns = (*SUMMARY_COLUMNS[:-2], "ci_low", "ci_high", *SUMMARY_COLUMNS[-2:])
        columns += ("seed", "bootstrap_seed")
    print_table(
        summary_table(runs.comparison_table(result.rows, result.p_fdr), columns),
        title=f"sweep {result.sweep_id}",
    )
    if result.recovery:
        print_table(
            summary_table(
                runs.sweep_recovery_table(result.recovery, result.p_fdr),
                (*RECOVERY_SUMMARY, "p_fdr"),
            ),
            title=f"sweep {result.sweep_id}: results_recovery",
        )
    if result.diffs:
        from semwh.runs.difference import diff_table

        print_table(
            diff_table(result.diffs, result.p_fdr).select(
                [
                    "result_id",
                    "first_test",
                    "space_a",
                    "space_b",
                    "difference",
                    "ci_low",
                    "ci_high",
                    "p_value",
                    "p_fdr",
                ]
            ),
            title=f"sweep {result.sweep_id}: layer minus random control",
        )
    for item in result.skipped:
        err_console.print(f"[yellow]skipped:[/yellow] {item.reason}", highlight=False)
    again = " (the same family as stored before)" if result.reused else ""
    err_console.print(
        f"sweep {result.sweep_id}{again}: {len(result.rows)} comparisons "
        f"({result.computed} computed, {len(result.rows) - result.computed} found stored), "
        f"{len(result.recovery)} recovery layers, {len(result.skipped)} skipped, "
        f"seed {result.seed}; p_fdr is Benjamini-Hochberg over this sweep's "
        f"{sum(1 for p in result.p_fdr.values() if p is not None)} tests"
    )


def _print_grid(result: Any, what: str) -> None:
    from semwh.runs.grid import grid_table

    columns = ["grid_id", "test", "best_space_a", "best_space_b", "best_statistic", "p_fwe_best"]
    if what != "grid":
        columns += ["peak_relative_depth", "depth_ci_low", "depth_ci_high"]
    print_table(grid_table(result).select(columns), title=f"{what} (sweep {result.sweep_id})")
    for item in result.skipped:
        err_console.print(f"[yellow]skipped:[/yellow] {item.reason}", highlight=False)
    again = " (the same family as stored before)" if result.reused else ""
    err_console.print(
        f"{what}{again}: {result.computed} cells computed; p_fwe_best is the family-wise p "
        "of the best cell from the max-statistic null over every cell; per-cell p_fwe and "
        "the sweep's p_fdr are in the view grid_results",
        highlight=False,
    )


@app.command("grid")
def grid(
    ctx: typer.Context,
    a: str = typer.Option(..., "--a", help="A model (vision or text) or comma-separated spaces."),
    b: str = typer.Option(..., "--b", help="A model or comma-separated spaces (relabelled)."),
    tests: str = _TESTS,
    permutations: int = typer.Option(1000, "--permutations", "-n", help="Permutations."),
    seed: int | None = _SEED,
    similarity: str = _SIMILARITY,
    tie_tol: float = _TIE_TOL,
    device: str = _DEVICE,
    force: bool = _FORCE,
    normalise: str = _NORMALISE,
    estimator: str = _ESTIMATOR,
    k: int = _K,
    regression_distance: str = _REG_DISTANCE,
    penalties: str | None = _PENALTIES,
    backend: str = _BACKEND,
    ray_address: str | None = _RAY_ADDRESS,
    gpus_per_task: float = _GPUS_PER_TASK,
    perm_block: int | None = _PERM_BLOCK,
    option: list[str] | None = _MEASURE_OPTIONS,
    level: str = _LEVEL,
    permute: str | None = _PERMUTE,
    bootstrap_over: str | None = _BOOTSTRAP_OVER,
) -> None:
    """Every layer of A against every layer of B, with a max-statistic test of the best cell.

    Example: semwh analyze grid --a efficientnet_lite0 --b all-minilm-l6-v2 --tests rsa,cka
    """
    from semwh.runs.grid import GridOptions
    from semwh.runs.grid import grid as run_grid

    options = GridOptions(
        item_level=level,
        permute=permute,
        resample=bootstrap_over,
        tests=_split(tests),
        permutations=permutations,
        seed=seed,
        similarity=similarity,
        tie_tol=tie_tol,
        device=device,
        force=force,
        normalise=normalise,
        estimator=estimator,
        k=k,
        regression_distance=regression_distance,
        measure_options=_measure_options(option),
        **_grid(penalties),
    )
    mapper = _mapper(backend, ray_address, gpus_per_task, perm_block)
    wh = state(ctx).warehouse()
    with bars() as progress:
        result = run_grid(wh, a, b, options, progress=progress, mapper=mapper)
    _print_grid(result, "grid")


@app.command("peak")
def peak(
    ctx: typer.Context,
    model: str = typer.Option(..., "--model", help="A model (vision or text): its layers."),
    target: str = typer.Option(
        ..., "--target", help="The target space (word, text, external, rdm)."
    ),
    tests: str = _TESTS,
    permutations: int = typer.Option(1000, "--permutations", "-n", help="Permutations."),
    bootstrap: int = typer.Option(
        1000, "--bootstrap", help="Concept resamples for the peak's relative-depth interval."
    ),
    seed: int | None = _SEED,
    similarity: str = _SIMILARITY,
    tie_tol: float = _TIE_TOL,
    device: str = _DEVICE,
    force: bool = _FORCE,
    normalise: str = _NORMALISE,
    estimator: str = _ESTIMATOR,
    k: int = _K,
    regression_distance: str = _REG_DISTANCE,
    penalties: str | None = _PENALTIES,
    backend: str = _BACKEND,
    ray_address: str | None = _RAY_ADDRESS,
    gpus_per_task: float = _GPUS_PER_TASK,
    perm_block: int | None = _PERM_BLOCK,
    option: list[str] | None = _MEASURE_OPTIONS,
    level: str = _LEVEL,
    permute: str | None = _PERMUTE,
    bootstrap_over: str | None = _BOOTSTRAP_OVER,
) -> None:
    """The peak layer of a model against a target: family-wise p and a depth interval.

    Example: semwh analyze peak --model efficientnet_lite0 --target glove-6b-50d --tests cka
    """
    from semwh.runs.grid import GridOptions, peak_layer

    options = GridOptions(
        item_level=level,
        permute=permute,
        resample=bootstrap_over,
        kind="peak",
        tests=_split(tests),
        permutations=permutations,
        bootstrap=bootstrap,
        seed=seed,
        similarity=similarity,
        tie_tol=tie_tol,
        device=device,
        force=force,
        normalise=normalise,
        estimator=estimator,
        k=k,
        regression_distance=regression_distance,
        measure_options=_measure_options(option),
        **_grid(penalties),
    )
    mapper = _mapper(backend, ray_address, gpus_per_task, perm_block)
    wh = state(ctx).warehouse()
    with bars() as progress:
        result = peak_layer(wh, model, target, options, progress=progress, mapper=mapper)
    _print_grid(result, "peak layer")
