"""Without timm or transformers, their prefixes say what to install; other sources still work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration

HINT = "pip install 'semwh[vision]'"


def _shadow(tmp_path: Path, *packages: str) -> dict[str, str]:
    """An environment whose imports of ``packages`` fail as where they are not installed."""
    root = tmp_path / "shadow"
    for name in packages:
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text(
            f"raise ImportError(\"No module named '{name}'\")\n"
        )
    return {"PYTHONPATH": str(root)}


def test_timm_prefix_without_timm_names_the_extra(warehouse, tmp_path: Path) -> None:
    env = _shadow(tmp_path, "timm")
    proc = run_cli(
        "--warehouse", str(warehouse.root), "extract", "timm:resnet18", env=env, check=False
    )  # fmt: skip
    assert proc.returncode == 1
    assert "timm: models need the timm package" in proc.stderr and HINT in proc.stderr
    assert "Traceback" not in proc.stderr


def test_hf_prefix_without_transformers_names_the_extra(tmp_path: Path) -> None:
    script = (
        "from semwh.errors import MissingDependencyError\n"
        "from semwh.extract.models import model_spec\n"
        "assert model_spec('resnet18', weights='none').name == 'resnet18-random'\n"
        "try:\n"
        "    model_spec('hf:facebook/dinov2-small')\n"
        "except MissingDependencyError as exc:\n"
        "    print(exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**_shadow(tmp_path, "transformers"), "PATH": "/usr/bin:/bin"},
        timeout=300,
        check=True,
    )
    assert "hf: models need the transformers package" in proc.stdout and HINT in proc.stdout
