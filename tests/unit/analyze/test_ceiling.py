"""RSA noise ceilings equal rsatoolbox's boot_noise_ceiling (leave one subject out / all)."""

from __future__ import annotations

import numpy as np
import pytest

from semwh.analyze.ceiling import noise_ceiling
from semwh.errors import ConfigError


@pytest.mark.parametrize("seed", range(3))
def test_noise_ceiling_equals_rsatoolbox(seed: int) -> None:
    rsatoolbox = pytest.importorskip("rsatoolbox")
    from rsatoolbox.inference import boot_noise_ceiling

    rng = np.random.default_rng(seed)
    n, subjects = 9 + seed, 3 + seed
    base = rng.standard_normal((n, 4))
    stack = []
    for _ in range(subjects):
        x = base + rng.standard_normal((n, 4))
        stack.append(np.linalg.norm(x[:, None] - x[None], axis=2))
    stack = np.stack(stack)
    iu = np.triu_indices(n, 1)
    rdms = rsatoolbox.rdm.RDMs(np.stack([d[iu] for d in stack]))
    for ours, theirs in (("spearman", "spearman"), ("pearson", "corr")):
        got = noise_ceiling(stack, ours)
        lower, upper = boot_noise_ceiling(rdms, method=theirs)
        assert (got.lower, got.upper) == (
            pytest.approx(lower, abs=1e-9),
            pytest.approx(upper, abs=1e-9),
        )
        assert got.lower < got.upper


def test_refusals() -> None:
    stack = np.stack([np.array([[0.0, 1, 2, 4], [1, 0, 3, 5], [2, 3, 0, 6], [4, 5, 6, 0]])] * 2)
    with pytest.raises(ConfigError, match="at least two subjects"):
        noise_ceiling(stack[:1])
    with pytest.raises(ConfigError, match="unknown noise-ceiling method 'kendal'"):
        noise_ceiling(stack, "kendal")
