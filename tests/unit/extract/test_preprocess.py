"""Worker/device preprocessing split equals the reference transforms on real images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from semwh.errors import ConfigError
from semwh.extract.preprocess import Preprocessing, parse_preprocessing
from semwh.extract.sources.lite0 import EFFICIENTNET_LITE0_PREPROCESSING


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


def test_parse_preprocessing_presets_entries_and_errors() -> None:
    base = Preprocessing(resize=232, crop=224, interpolation="bicubic")
    assert parse_preprocessing(None, base) is base
    # Entries alone adjust the source's preprocessing; a preset replaces it.
    adjusted = parse_preprocessing("resize=73,crop=64", base)
    assert (adjusted.resize, adjusted.crop, adjusted.interpolation) == (73, 64, "bicubic")
    clip = parse_preprocessing("clip,crop=192", base)
    assert (clip.resize, clip.crop, clip.mean[0]) == (224, 192, 0.48145466)
    table = parse_preprocessing({"resize": 40, "crop": 32, "mean": [0.5] * 3, "std": [0.5] * 3})
    assert table.mean == (0.5, 0.5, 0.5) and table.interpolation == "bilinear"
    text = parse_preprocessing("resize=40,crop=32,mean=0.5/0.5/0.5,resize_mode=square")
    assert text.mean == (0.5, 0.5, 0.5) and text.resize_mode == "square"
    for bad, message in [
        ("imagenet,clip", "two presets"),
        ("vgg", "unknown preprocessing preset"),
        ("crop=224", "needs resize"),
        ("imagenet,size=3", "unknown preprocessing key 'size'"),
        ("imagenet,crop=big", "crop='big' is not a valid value"),
        ("imagenet,interpolation=cubic", "unknown interpolation"),
        ("imagenet,resize_mode=fit", "unknown resize mode"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_preprocessing(bad)


def test_new_preprocessing_fields_enter_the_identity_only_when_used() -> None:
    plain = Preprocessing(resize=256, crop=224)
    assert "resize_mode" not in plain.to_dict() and "crop_rounding" not in plain.to_dict()
    hf = Preprocessing(resize=224, crop=224, resize_mode="square", crop_rounding="floor")
    assert hf.to_dict()["resize_mode"] == "square" and hf.to_dict()["crop_rounding"] == "floor"


def test_square_resize_and_floor_crop_match_pil(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "odd.png"
    Image.fromarray(rng.integers(0, 256, (41, 60, 3), dtype=np.uint8)).save(path)
    img = Image.open(path).convert("RGB")
    square = Preprocessing(resize=32, crop=32, resize_mode="square").load(path).numpy()
    expected = np.asarray(img.resize((32, 32), Image.BILINEAR)).transpose(2, 0, 1)
    assert np.array_equal(square, expected)
    # Shorter side 41 -> 35: the image is 51 x 35; a 32 crop starts at (9, 1) rounded down.
    floor = Preprocessing(resize=35, crop=32, crop_rounding="floor").load(path).numpy()
    resized = img.resize((51, 35), Image.BILINEAR)
    expected = np.asarray(resized.crop((9, 1, 41, 33))).transpose(2, 0, 1)
    assert np.array_equal(floor, expected)
