"""Without Ray, the ray backend says what to install and everything else still works."""

from __future__ import annotations

from pathlib import Path

import pytest

from semwh.errors import ConfigError
from semwh.ray import extraction_backend, sweep_mapper
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
    # The backend is resolved before the sweep looks at its models.
    assert proc.returncode == 1 and HINT in proc.stderr and "Traceback" not in proc.stderr


def test_backend_is_the_option_and_engine_its_other_spelling(warehouse, no_ray) -> None:
    proc = run_cli(
        "--warehouse", str(warehouse.root), "extract", "efficientnet_lite0", "--backend", "ray",
        env=no_ray, check=False,
    )  # fmt: skip
    assert proc.returncode == 1 and HINT in proc.stderr
    for command in (["extract"], ["analyze", "sweep"]):
        shown = run_cli("--warehouse", str(warehouse.root), *command, "--help", env=no_ray)
        assert "--backend" in shown.stdout and "--engine" in shown.stdout


def test_local_engine_needs_no_ray(warehouse, no_ray) -> None:
    proc = run_cli("--warehouse", str(warehouse.root), "extract", "--help", env=no_ray)
    assert "--engine" in proc.stdout


def test_unknown_engine_and_misplaced_ray_options() -> None:
    with pytest.raises(ConfigError, match="unknown engine 'spark' \\(choose local, ray\\)"):
        extraction_backend("spark")
    with pytest.raises(ConfigError, match="--engine ray only"):
        extraction_backend("local", gpus_per_actor=0.5)
    with pytest.raises(ConfigError, match="--engine ray only"):
        sweep_mapper("local", ray_address="auto")
    assert sweep_mapper("local") is map
