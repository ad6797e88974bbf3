"""Device JPEG decoding (the GPU path) run on the CPU: the PIL path's tensors and vectors.

``decode_batch`` is the code the GPU path runs, with the device as its only difference; on the
CPU both decoders are libjpeg-turbo, so the pixels agree to the decoders' tolerance (here
they are identical). nvjpeg on a GPU rounds its IDCT differently: the CUDA case allows the
documented tolerance of a few grey levels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from torch import nn

from semwh.errors import InputError
from semwh.extract.batches import ProbedModel, run_shard
from semwh.extract.decode import FileBytesDataset, decode_batch, iter_decoded, resolve_decoder
from semwh.extract.hooks import parse_pooling
from semwh.extract.layouts import parse_layout
from semwh.extract.preprocess import Preprocessing

CHANNELS_FIRST = parse_layout("channels_first")
#: Largest per-pixel difference (grey levels, of 255) between two JPEG decoders' crops.
MAX_LEVELS = {"cpu": 2, "cuda": 8}
#: Largest mean absolute difference per image (grey levels).
MEAN_LEVELS = {"cpu": 0.5, "cuda": 1.5}


@pytest.fixture(scope="module")
def photos(samples_dir: Path) -> list[Path]:
    """Eight photos of different sizes and subjects."""
    return sorted(samples_dir.glob("*.jpg"))[::97][:8]


def _pil(paths: list[Path], pre: Preprocessing) -> torch.Tensor:
    return torch.stack([pre.load(p) for p in paths])


def _within_tolerance(got: torch.Tensor, want: torch.Tensor, device: str) -> None:
    diff = (got.cpu().int() - want.int()).abs().float()
    assert got.shape == want.shape and got.dtype == torch.uint8
    assert diff.max().item() <= MAX_LEVELS[device]
    assert diff.mean(dim=(1, 2, 3)).max().item() <= MEAN_LEVELS[device]


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_device_decoding_gives_pils_tensors(photos: list[Path], interpolation: str) -> None:
    pre = Preprocessing(resize=256, crop=224, interpolation=interpolation)
    items = [FileBytesDataset(photos, pre)[i] for i in range(len(photos))]
    assert all(data is not None for _, data, _ in items)  # read as bytes, not decoded
    got = decode_batch(items, pre, torch.device("cpu"), photos)
    _within_tolerance(got, _pil(photos, pre), "cpu")


def test_other_formats_fall_back_to_pil(photos: list[Path], tmp_path: Path) -> None:
    pre = Preprocessing(resize=160, crop=128)
    png = tmp_path / "photo.png"
    with PILImage.open(photos[0]) as img:
        img.save(png)
    paths = [png, photos[2]]
    items = [FileBytesDataset(paths, pre)[i] for i in range(2)]
    assert items[0][1] is None and items[0][2] is not None
    got = decode_batch(items, pre, torch.device("cpu"), paths)
    assert torch.equal(got[0], pre.load(png))
    _within_tolerance(got[1:2], pre.load(photos[2])[None], "cpu")


def test_a_broken_jpeg_is_named_as_on_the_pil_path(photos: list[Path], tmp_path: Path) -> None:
    """The batch decoder refuses it, the file alone is retried, then PIL names the file."""
    pre = Preprocessing(resize=160, crop=128)
    broken = tmp_path / "truncated.jpg"
    broken.write_bytes(photos[1].read_bytes()[:3000])
    paths = [photos[0], broken]
    items = [FileBytesDataset(paths, pre)[i] for i in range(2)]
    with pytest.raises(InputError, match="cannot decode image .*truncated.jpg"):
        decode_batch(items, pre, torch.device("cpu"), paths)


def test_pipelined_batches_keep_their_order(photos: list[Path]) -> None:
    pre = Preprocessing(resize=96, crop=80)
    data = FileBytesDataset(photos, pre)
    batches = [[data[i] for i in range(k, min(k + 3, len(photos)))] for k in range(0, 8, 3)]
    got = torch.cat(list(iter_decoded(batches, pre, torch.device("cpu"), photos)))
    _within_tolerance(got, _pil(photos, pre), "cpu")


def test_shard_vectors_agree_between_decoders(photos: list[Path]) -> None:
    """A small random-weight network: the pooled vectors of both paths agree (fp32)."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 5, stride=4),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3),
        nn.Flatten(1),
        nn.LazyLinear(10),
    )
    pre = Preprocessing(resize=256, crop=224)
    net(torch.zeros(1, 3, 224, 224))
    outputs = {}
    for decoder in ("pil", "jpeg"):
        model = ProbedModel(
            net,
            ["1", "2"],
            parse_pooling("avg"),
            pre,
            torch.device("cpu"),
            decoder=decoder,
            layouts=dict.fromkeys(["1", "2"], CHANNELS_FIRST),
        )
        outputs[decoder] = run_shard(model, photos, batch_size=3, num_workers=0)
        model.close()
    for layer in ("1", "2"):
        a, b = outputs["pil"].vectors[layer], outputs["jpeg"].vectors[layer]
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6 * float(np.abs(a).max()))
    np.testing.assert_array_equal(outputs["pil"].top_index, outputs["jpeg"].top_index)


def test_decoder_choice() -> None:
    assert resolve_decoder("auto", torch.device("cpu")) == "pil"
    assert resolve_decoder("auto", torch.device("cuda")) == "jpeg"
    with pytest.raises(Exception, match="unknown decoder 'nvjpg'"):
        resolve_decoder("nvjpg", torch.device("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (nvjpeg)")
def test_gpu_decoding_within_the_decoders_tolerance(photos: list[Path]) -> None:
    pre = Preprocessing(resize=256, crop=224)
    items = [FileBytesDataset(photos, pre)[i] for i in range(len(photos))]
    got = decode_batch(items, pre, torch.device("cuda"), photos)
    assert got.device.type == "cuda"
    _within_tolerance(got, _pil(photos, pre), "cuda")


#: bf16 autocast against fp32 (the GPU path's default precision against the CPU's): largest
#: relative (Frobenius) difference of a layer's pooled vectors, and smallest per-image
#: correlation. Measured on resnet18: about 3e-3 and 0.99998.
BF16_REL = 1e-2
BF16_CORR = 0.9999


def test_bf16_vectors_within_the_documented_tolerance(photos: list[Path]) -> None:
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)
    pre = Preprocessing(resize=128, crop=112)
    layers = ["layer2", "layer4", "avgpool"]
    out = {}
    for precision in ("fp32", "bf16"):
        model = ProbedModel(
            net,
            layers,
            parse_pooling("avg"),
            pre,
            torch.device("cpu"),
            precision,
            decoder="jpeg",
            layouts=dict.fromkeys(layers, CHANNELS_FIRST),
        )
        out[precision] = run_shard(model, photos[:4], batch_size=4, num_workers=0)
        model.close()
    for layer in layers:
        a, b = out["fp32"].vectors[layer], out["bf16"].vectors[layer]
        assert np.linalg.norm(a - b) / np.linalg.norm(a) < BF16_REL
        assert min(np.corrcoef(a[i], b[i])[0, 1] for i in range(len(a))) > BF16_CORR
