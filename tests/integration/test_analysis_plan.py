"""Memory plans of `semwh analyze rsa|2v2`: inputs streamed from tmp/ or refused with numbers."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from semwh import runs
from semwh.errors import ResourceError
from semwh.runs.comparison import plan_comparison, plan_for
from semwh.runs.plan import AnalysisPlan, check_analysis_plan, plan_analysis
from semwh.vectors import load_space
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import Result2v2, ResultRSA
from tests.conftest import run_cli
from tests.integration.test_analyze import build_world

pytestmark = pytest.mark.integration

GIB = 2**30


def _plan(test: str, metric: str, ram_free: int | None, **kw: int) -> AnalysisPlan:
    return plan_analysis(
        test,
        f"{test} of 'layer' vs 'words'",
        n_concepts=kw.pop("n", 20_000),
        dims=(2048, 300),
        metric=metric,
        permutations=kw.pop("permutations", 0),
        bootstrap=kw.pop("bootstrap", 0),
        device="cpu",
        ram_free=ram_free,
        disk_free=kw.pop("disk_free", 100 * GIB),
    )


def test_plans_at_imagenet_21k_scale() -> None:
    # Two 20,000 x 20,000 float64 matrices are 6 GiB.
    plan = _plan("2v2", "pearson", 16 * GIB)
    assert plan.inputs_bytes == 2 * 20_000**2 * 8
    assert plan.fits and not plan.stream_inputs and plan.ram_needed < 8 * GIB
    assert "20000 concepts" in plan.lines()[0] and "in memory" in plan.lines()[1]
    # Less memory than inputs plus work: the inputs go to tmp/ and the work still fits.
    small = _plan("2v2", "pearson", 4 * GIB)
    assert small.stream_inputs and small.fits and "streamed from files in tmp/" in small.lines()[1]
    check_analysis_plan(small)
    # Spearman RSA ranks the 2e8-entry triangles: about 4.5 GiB of work.
    rsa = _plan("rsa", "spearman", 16 * GIB)
    assert rsa.fits and 4 * GIB < rsa.work_bytes < 6 * GIB
    refused = r"needs about 5\.\d GB .* 3\.0 GB is available.*--method pearson"
    with pytest.raises(ResourceError, match=refused):
        check_analysis_plan(_plan("rsa", "spearman", 3 * GIB))
    # A permutation test holds copies of the matrices: refused, and told to drop -n.
    with pytest.raises(ResourceError, match="without -n"):
        check_analysis_plan(_plan("2v2", "pearson", 16 * GIB, permutations=1000))
    # Streaming needs room in tmp/.
    with pytest.raises(ResourceError, match="tmp/, which has 1.0 GB free"):
        check_analysis_plan(_plan("2v2", "pearson", 4 * GIB, disk_free=GIB))


def test_streamed_inputs_give_the_in_memory_numbers(warehouse: Warehouse) -> None:
    build_world(warehouse)
    a, b = "toy/block2", "words"
    spaces = load_space(warehouse, a), load_space(warehouse, b)
    for test in ("2v2", "rsa"):
        options = runs.ComparisonOptions.make(test, permutations=9, seed=3)
        spec = plan_comparison(*spaces, options, {})
        # Just enough memory for the work: the matrices must go to files.
        memory = plan_for(spec, warehouse.tmp_root).work_bytes + 1
        seen: list[AnalysisPlan] = []
        streamed = runs.compare(
            warehouse, a, b, test, permutations=9, seed=3, memory=memory, on_plan=seen.append
        )
        assert seen and seen[0].stream_inputs
        in_memory = runs.compare(warehouse, a, b, test, permutations=9, seed=3, force=True)
        stat = "accuracy" if test == "2v2" else "rho"
        assert getattr(streamed, stat) == getattr(in_memory, stat)
        assert streamed.p_value == in_memory.p_value
    assert not list(warehouse.tmp_root.glob("similarity-*"))


def test_cli_prints_the_plan_and_refuses_what_cannot_fit(warehouse: Warehouse) -> None:
    build_world(warehouse)
    proc = run_cli(
        "--warehouse",
        str(warehouse.root),
        "analyze",
        "rsa",
        "--a",
        "toy/block1",
        "--b",
        "words",
        "--memory",
        "10K",
        check=False,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "RAM:" in proc.stderr and "needed, 10.0 KB available" in proc.stderr
    assert "needs about" in proc.stderr and "raise --memory" in proc.stderr
    with warehouse.session() as session:
        assert session.scalars(select(ResultRSA)).first() is None
        assert session.scalars(select(Result2v2)).first() is None


def test_small_comparisons_need_little_memory() -> None:
    """The blocked kernels' working memory scales with n: 30 concepts of 2048 and 300
    features need a few megabytes (mostly their vectors), whatever the method."""
    for test, metric in (("rsa", "spearman"), ("rsa", "pearson"), ("2v2", "pearson")):
        plan = _plan(test, metric, 512 * 2**20, n=30)
        assert plan.fits and plan.work_bytes < 2 * 2**20, (test, metric, plan.work_bytes)
        check_analysis_plan(plan)


def test_plan_counts_every_option() -> None:
    base = _plan("2v2", "pearson", None, n=1000).work_bytes
    assert _plan("2v2", "pearson", None, n=1000, permutations=10).work_bytes > base
    assert _plan("2v2", "pearson", None, n=1000, bootstrap=10).work_bytes > base
    kendall = _plan("rsa", "kendall", None, n=1000)
    assert kendall.work_bytes > _plan("rsa", "pearson", None, n=1000).work_bytes
    assert np.isclose(_plan("rsa", "pearson", None, n=1000).inputs_bytes, 16e6)
