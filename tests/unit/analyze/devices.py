"""The devices the torch paths are tested on: the CPU always, CUDA where there is one."""

from __future__ import annotations

import pytest
import torch

#: Marks of a test that needs a CUDA device (skipped, with the reason, where there is none).
CUDA = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
#: ``@pytest.mark.parametrize("device", DEVICES)``: once on the CPU, once on CUDA.
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]
