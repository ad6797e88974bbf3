"""Without Ray, ``--engine ray`` says what to install and everything else still works."""

from __future__ import annotations

from pathlib import Path

import pytest

from semwh.ray import extraction_function, sweep_engine
from semwh.errors import ConfigError
from tests.conftest import run_cli

pytestmark = pytest.mark.integration

HINT = "the ray engine needs Ray: pip install 'semwh[ray]'"


@pytest.fixture
def no_ray(tmp_path: Path) -> dict[str, str]:
    """An environment whose ``import ray`` fails as it does where Ray is not installed."""
    shadow = tmp_path / "no-ray" / "ray"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    return {"PYTHONPATH": str(shadow.parent)}


def test_extract_engine_ray_without_ray_names_the_extra(warehouse, no_ray) -> None:
    proc = run_cli(
        "--warehouse", str(warehouse.root), "extract", "efficientnet_lite0", "--engine", "ray",
        env=no_ray, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert HINT in proc.stderr and "Traceback" not in proc.stderr


def test_sweep_engine_ray_without_ray_names_the_extra(warehouse, no_ray) -> None:
    proc = run_cli(
        "--warehouse", str(warehouse.root), "analyze", "sweep", "--models", "m",
        "--words", "w", "--engine", "ray", env=no_ray, check=False,
    )  # fmt: skip
    # The engine is resolved before the sweep looks at its models.
    assert proc.returncode == 1 and HINT in proc.stderr and "Traceback" not in proc.stderr


def test_local_engine_needs_no_ray(warehouse, no_ray) -> None:
    proc = run_cli("--warehouse", str(warehouse.root), "extract", "--help", env=no_ray)
    assert "--engine" in proc.stdout


def test_unknown_engine_and_misplaced_ray_options() -> None:
    with pytest.raises(ConfigError, match="unknown engine 'spark' \\(choose local, ray\\)"):
        extraction_function("spark")
    with pytest.raises(ConfigError, match="--engine ray only"):
        extraction_function("local", gpus_per_actor=0.5)
    with pytest.raises(ConfigError, match="--engine ray only"):
        sweep_engine("local", ray_address="auto")
    assert sweep_engine("local") is map
