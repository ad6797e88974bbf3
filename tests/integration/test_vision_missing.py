"""Without timm or transformers, their prefixes say what to install; other sources still work."""

from __future__ import annotations

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


def test_hf_prefix_without_transformers_names_the_extra(monkeypatch) -> None:
    from semwh.errors import MissingDependencyError
    from semwh.extract.networks import model_spec

    # A None entry makes `import transformers` fail as where it is not installed.
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingDependencyError) as info:
        model_spec("hf:facebook/dinov2-small")
    assert "hf: models need the transformers package" in str(info.value)
    assert HINT in str(info.value)
    assert model_spec("resnet18", weights="none").name == "resnet18-random"


def test_openclip_without_open_clip_says_what_to_install(monkeypatch) -> None:
    from semwh.errors import MissingDependencyError
    from semwh.extract.catalog import list_models
    from semwh.extract.networks import model_spec

    monkeypatch.setitem(sys.modules, "open_clip", None)
    [entry] = list_models("openclip:*")
    assert not entry.available and "pip install 'semwh[models]'" in entry.note
    with pytest.raises(MissingDependencyError, match=r"open-clip-torch package: pip install"):
        model_spec("openclip:ViT-B-32", weights="none")
