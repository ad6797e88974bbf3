"""`semwh demo`: the whole study on sample images, in one command."""

from __future__ import annotations

from pathlib import Path

import typer

from semwh.cli.printing import bars, print_table
from semwh.cli.run import print_stage, print_summary
from semwh.cli.state import console, state
from semwh.config import load_settings
from semwh.warehouse.layout import warehouse_from_settings
from semwh.workflow.demo import DEMO_PERMUTATIONS, DEMO_WAREHOUSE, demo_samples, run_demo


def demo(
    ctx: typer.Context,
    images: Path | None = typer.Option(
        None, "--images", help="Folder of <wnid>_*.jpg images (default: SEMWH_SAMPLES)."
    ),
    permutations: int = typer.Option(
        DEMO_PERMUTATIONS, "--permutations", help="Permutations per test."
    ),
) -> None:
    """EfficientNet-Lite0 (trained and random weights) vs GloVe: layer curves and a report.

    Uses ./semwh-demo unless --warehouse is given. Without --images or SEMWH_SAMPLES (and no
    ../shared/datasets/imagenet-200 beside the checkout), the public sample set of 1,000
    ImageNet photos is fetched once into semwh's cache folder (SEMWH_CACHE) from
    SEMWH_SAMPLES_URL and verified against the manifest that ships with semwh.

    Example: semwh demo --images ./photos
    """
    st = state(ctx)
    settings = st.settings
    if ctx.find_root().params.get("warehouse") is None:
        settings = load_settings(DEMO_WAREHOUSE, settings.db_url)
    wh = warehouse_from_settings(settings)
    with bars(transfer=True) as progress:
        folder = demo_samples(images, st.settings, progress=progress)
    with bars() as progress:
        result = run_demo(
            wh,
            folder,
            permutations=permutations,
            device=settings.device,
            progress=progress,
            on_stage=print_stage,
        )
    print_summary(result.summary)
    print_table(result.curves, title="layer curves: EfficientNet-Lite0 vs GloVe")
    console.print(f"report: {result.summary.report}")
