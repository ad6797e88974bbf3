"""`semwh models`: model sources, their models, and a model's default probe layers."""

from __future__ import annotations

import typer
from rich.markup import escape

from semwh.cli.state import console


def models(
    name: str | None = typer.Argument(
        None,
        help="A model (timm:vit_small_patch16_224, hf:DIR, vit_b_16) to show its default "
        "probes, or a glob pattern (timm:*convnext*) to list models.",
    ),
    layers: str | None = typer.Option(None, "--layers", help="Show these layers instead."),
    preprocessing: str | None = typer.Option(
        None, "--preprocessing", help="Preset and/or key=value entries (module: models)."
    ),
    layout: str | None = typer.Option(
        None, "--layout", help="Declared layouts: LAYER=LAYOUT entries and/or a fallback."
    ),
    token_pooling: str = typer.Option("mean", "--token-pooling", help="mean or cls."),
) -> None:
    """List each model source and its models, or one model's default probe layers.

    Sources whose package is missing say what to install; outside sources (entry points
    `semwh.sources`) are listed with the built-in ones.

    Example: semwh models timm:vit_small_patch16_224
    """
    from semwh.extract.catalog import describe_model, list_models

    if name is None or any(c in name for c in "*?["):
        for entry in list_models(name):
            state = "" if entry.available else " (not installed)"
            if entry.broken:
                state = " (cannot be loaded)"
            note = escape(entry.note)
            console.print(f"[bold]{entry.source}[/bold]{state}: {note}", highlight=False)
            if entry.models and name is None and len(entry.models) > 200:
                console.print(
                    f"  {len(entry.models)} models; e.g. semwh models '{entry.source}:*vit*'",
                    highlight=False,
                )
            elif entry.models:
                console.print(
                    "  " + ", ".join(entry.models), highlight=False, soft_wrap=True, markup=False
                )
        return
    info = describe_model(
        name, layers=layers, token_pooling=token_pooling, preprocessing=preprocessing,
        layouts=layout,
    )  # fmt: skip
    prep = info.preprocessing
    console.print(
        f"{info.name} ({info.architecture}, {info.n_parameters:,} parameters); input: "
        f"resize {prep['resize']} ({prep.get('resize_mode', 'shorter')}), crop {prep['crop']}, "
        f"{prep['interpolation']}, mean {prep['mean']}, std {prep['std']}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    for i, probe in enumerate(info.probes):
        shape = "x".join(str(s) for s in probe.output_shape)
        console.print(
            f"  {i:>3} {probe.module:<32} {shape:>12} {probe.layout:<16} {probe.pooling:<12} "
            f"dim {probe.dim}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    if info.n_classes is None:
        predictions = "none (the model outputs no class logits)"
    else:
        where = f" ({info.logits_layer})" if info.logits_layer else ""
        predictions = f"top 5 of {info.n_classes} classes{where}"
    console.print(f"  predictions: {predictions}", highlight=False, markup=False)
