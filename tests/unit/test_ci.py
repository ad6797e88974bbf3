"""CI lints before it tests: `.ci/run` runs `make lint`, then the README's `make test`."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _recipe(target: str) -> list[str]:
    """The command lines of a Makefile target."""
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    match = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert match, f"Makefile has no {target} target"
    return [line.strip() for line in match.group(1).splitlines()]


def test_lint_runs_ruff_and_mypy_on_the_package() -> None:
    lines = _recipe("lint")
    assert any("ruff check semwh" in line for line in lines)
    assert any("ruff format --check semwh" in line for line in lines)
    assert "$(VENV)/bin/mypy semwh" in lines


def test_ci_lints_then_runs_the_readme_test_command() -> None:
    commands = [
        line.strip()
        for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip().startswith("make ")
    ]
    assert commands == ["make lint", "make test"]
    assert "make test    #" in (REPO / "README.md").read_text(encoding="utf-8")
