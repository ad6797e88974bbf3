"""Worker/device preprocessing split equals the reference transforms on real images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from semwh.extract.models import EFFICIENTNET_LITE0_PREPROCESSING
from semwh.extract.preprocess import Preprocessing


def _some_images(samples_dir: Path) -> list[Path]:
    files = sorted(samples_dir.glob("*.jpg"))
    gray = [f for f in files if Image.open(f).mode != "RGB"]
    assert gray, "the sample set has one grayscale image"
    return files[:: len(files) // 6][:6] + gray


def test_matches_torchvision_weights_transform(samples_dir: Path) -> None:
    for weights in (
        torchvision.models.ResNet50_Weights.IMAGENET1K_V2,
        torchvision.models.Inception_V3_Weights.IMAGENET1K_V1,
    ):
        transform = weights.transforms()
        pre = Preprocessing.from_transform(transform)
        for path in _some_images(samples_dir):
            expected = transform(Image.open(path).convert("RGB"))
            got = pre.normalize(pre.load(path).unsqueeze(0))[0]
            assert torch.equal(got, expected), path.name


def test_efficientnet_lite0_is_x_minus_127_over_128(samples_dir: Path) -> None:
    pre = EFFICIENTNET_LITE0_PREPROCESSING
    for path in _some_images(samples_dir):
        img = Image.open(path).convert("RGB")
        w, h = img.size
        scale = 256 / min(w, h)
        size = (max(256, round(w * scale)), max(256, round(h * scale)))
        img = img.resize(size, Image.BILINEAR)
        left, top = round((size[0] - 224) / 2), round((size[1] - 224) / 2)
        crop = np.asarray(img.crop((left, top, left + 224, top + 224)), dtype=np.float64)
        expected = (crop - 127.0) / 128.0
        got = pre.normalize(pre.load(path).unsqueeze(0))[0].permute(1, 2, 0).numpy()
        assert got.shape == (224, 224, 3)
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    from semwh.errors import InputError

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match="broken.jpg"):
        EFFICIENTNET_LITE0_PREPROCESSING.load(bad)
