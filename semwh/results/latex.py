"""A results bundle's LaTeX tables: one booktabs table per measure and target, numbers
rounded to three decimals and p-values below 0.001 written as <0.001."""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from semwh.version import __version__
from semwh.warehouse.models import Space

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _json_object(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


_TEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    # Text-mode <, > and | print as other glyphs in LaTeX's default (OT1) font encoding.
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
}


def tex_escape(text: str) -> str:
    """``text`` as LaTeX prints it literally (names are the user's: any printable text)."""
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)


def format_p(p: float | None) -> str:
    """A p-value for a table: three decimals, ``$<$0.001`` below that."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "--"
    return "$<$0.001" if p < 0.001 else f"{p:.3f}"


def format_number(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "--"
    return f"{x:.{digits}f}"


_STATISTIC_LABEL = {"rsa": r"$\rho$", "2v2": "accuracy", "recovery": "success rate"}


def _slug(text: str) -> str:
    clean = _SAFE.sub("_", text).strip("_") or "x"
    if clean == text:
        return text
    return f"{clean[:40]}+{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def depths(session: Session) -> dict[str, tuple[str, int]]:
    """Per space its model (or own name) and depth, the order of a table's rows."""
    rows = session.execute(select(Space.name, Space.model, Space.depth_index)).all()
    return {str(n): (str(m or n), int(d) if d is not None else 0) for n, m, d in rows}


def latex_tables(
    rows: dict[str, list[dict[str, Any]]], depths: dict[str, tuple[str, int]]
) -> dict[str, str]:
    """One booktabs table per measure and target (and options, level): file name -> text."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows["comparisons"]:
        key: tuple[str, ...] = (
            str(row["test"]),
            str(row["space_b"]),
            str(row.get("level") or "concept"),
            str(row.get("options") or "{}"),
            str(row.get("sweep_id") or ""),
        )
        groups.setdefault(key, []).append(row)
    for row in rows["recovery"]:
        key = (
            "recovery",
            str(row["space_b"]),
            "image",
            str(row.get("similarity")),
            str(row.get("sweep_id") or ""),
        )
        groups.setdefault(key, []).append(row)
    out: dict[str, str] = {}
    for key, members in groups.items():
        test, target, level, options, sweep = key
        name = f"{_slug(test)}_{_slug(target)}"
        if level != "concept" and test != "recovery":
            name += f"_{level}"
        if f"tables/{name}.tex" in out and sweep:
            name += f"_sweep{sweep}"
        if f"tables/{name}.tex" in out:
            name += "_" + hashlib.sha256("\0".join(key).encode()).hexdigest()[:8]
        members.sort(key=lambda r: (*depths.get(r["space_a"], (r["space_a"], 0)), r["space_a"]))
        out[f"tables/{name}.tex"] = _latex_table(
            test, target, level, options, sweep, members, file_key=name
        )
    return out


def _latex_table(
    test: str,
    target: str,
    level: str,
    options: str,
    sweep: str,
    rows: list[dict[str, Any]],
    *,
    file_key: str,
) -> str:
    """One table; ``file_key`` is its file name, unique in the bundle, so \\label{tab:LABEL}
    is too (two sweeps or two targets whose names clean up alike never share a label)."""
    recovery = test == "recovery"
    has_ci = any(r.get("ci_low") is not None for r in rows)
    has_fdr = any(r.get("p_fdr") is not None for r in rows)
    label = _STATISTIC_LABEL.get(test, "statistic")
    heads = ["Space", "$n$" if not recovery else "images", label]
    heads += ["95\\% CI"] * has_ci + ["$p$"] + ["$p_{\\mathrm{FDR}}$"] * has_fdr
    lines = []
    for r in rows:
        value = r.get("accuracy") if recovery else r.get("statistic")
        cells = [
            tex_escape(str(r["space_a"])),
            str(r.get("n_images") if recovery else r.get("n_concepts")),
            format_number(value),
        ]
        if has_ci:
            lo, hi = r.get("ci_low"), r.get("ci_high")
            cells.append(
                "--" if lo is None or hi is None else f"[{format_number(lo)}, {format_number(hi)}]"
            )
        cells.append(format_p(r.get("p_value")))
        if has_fdr:
            cells.append(format_p(r.get("p_fdr")))
        lines.append(" & ".join(cells) + r" \\")
    perms = sorted({int(r.get("n_permutations") or 0) for r in rows})
    if recovery:
        what = f"1 vs 2 recovery of each layer with {tex_escape(target)}"
        how = "success rate; $p$: one-sided binomial test against 0.5"
    else:
        what = f"{tex_escape(test)} of each space against {tex_escape(target)}"
        settings = _json_object(options)
        if isinstance(settings, dict) and settings:
            what += " (" + ", ".join(f"{tex_escape(str(k))} {tex_escape(str(v))}"
                                     for k, v in sorted(settings.items())) + ")"  # fmt: skip
        how = f"{tex_escape(level)} level; $p$: permutation test, "
        how += f"{', '.join(map(str, perms))} permutations"
    if has_fdr:
        how += f"; $p_{{\\mathrm{{FDR}}}}$: Benjamini--Hochberg over sweep {tex_escape(sweep)}"
    if has_ci:
        how += "; CI: bootstrap interval stored with the result"
    label_key = re.sub(r"[^A-Za-z0-9.+_-]", "-", file_key)
    return "\n".join(
        [
            f"% semwh {__version__} bundle: {test} against {target} (needs booktabs).",
            r"\begin{table}[ht]",
            r"\centering",
            f"\\caption{{{what}: {how}.}}",
            f"\\label{{tab:{label_key}}}",
            r"\begin{tabular}{l" + "r" * (len(heads) - 1) + "}",
            r"\toprule",
            " & ".join(heads) + r" \\",
            r"\midrule",
            *lines,
            r"\bottomrule",
            r"\end{tabular}",
            r"\end{table}",
            "",
        ]
    )
