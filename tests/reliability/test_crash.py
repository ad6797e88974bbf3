"""SIGKILL `semwh ingest`, `semwh extract` and `semwh analyze sweep` at many points.

Kill points are named fault points (``SEMWH_FAULT``: a vector file written to ``tmp/`` but not
renamed, renamed but not registered) and delays drawn from a seeded generator. After every
kill, each registered Parquet file reads back whole and matches ``vector_files``; after the
work is run again to completion, the warehouse holds exactly the rows of an uninterrupted
reference run and ``tmp/`` is empty.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.reliability.conftest import (
    EXTRACT,
    SWEEP,
    ForkServer,
    Inputs,
    assert_same,
    check_registered_files,
    cli,
    finish,
    init_wh,
    open_wh,
    snapshot,
    tmp_files,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 20180601


def _kill_chain(
    forks: ForkServer,
    root: Path,
    commands: list[list[str]],
    points: list[str | float],
) -> int:
    """Run ``commands`` in turn, killing one process at each point; returns the kills.

    A point is a ``SEMWH_FAULT`` value (the process kills itself there) or a delay in seconds
    after which the test SIGKILLs it. A command that finishes before its kill moves the chain
    on to the next command. After every process the registered files are checked.
    """
    wh = open_wh(root)
    kills = 0
    step = 0
    for point in points:
        args = ["--warehouse", str(root), *commands[step]]
        if isinstance(point, str):
            child = forks.run(*args, env={"SEMWH_FAULT": point})
        else:
            child = forks.spawn(*args)
            if forks.wait(child, timeout=point) is None:
                forks.kill(child)
        if child.code == -9:
            kills += 1
        else:
            assert child.code == 0, f"semwh {' '.join(args)} failed:\n{child.stderr}"
            step = min(step + 1, len(commands) - 1)
        check_registered_files(wh)
    return kills


def test_killed_ingests_rerun_to_the_reference_rows(
    forks: ForkServer, inputs: Inputs, reference: dict[str, Path], tmp_path: Path
) -> None:
    rng = np.random.default_rng(SEED)
    wh = init_wh(tmp_path / "wh")
    commands = inputs.ingest_commands()
    points: list[str | float] = [
        *(float(d) for d in rng.uniform(0.3, 2.5, size=3)),  # images: inside the transaction
        "vectors.tmp_written:kill@1",
        "vectors.renamed:kill@1",
        "vectors.tmp_written:kill@1",
        "vectors.renamed:kill@1",
        float(rng.uniform(0.3, 2.0)),
    ]
    kills = _kill_chain(forks, wh.root, commands, points)
    assert kills >= 4
    finish(forks, wh.root, commands)
    assert_same(snapshot(wh), snapshot(open_wh(reference["ingested"])))
    check_registered_files(wh)
    assert tmp_files(wh) == []


def test_killed_extraction_resumes_to_the_reference_rows(
    forks: ForkServer, reference: dict[str, Path], tmp_path: Path
) -> None:
    rng = np.random.default_rng(SEED + 1)
    root = tmp_path / "wh"
    shutil.copytree(reference["ingested"], root)
    points: list[str | float] = [
        "vectors.tmp_written:kill@1",  # first file of the first shard, still in tmp/
        "vectors.renamed:kill@2",  # a shard half on disk, nothing registered
        "vectors.renamed:kill@3",  # a shard fully on disk, not registered
        "vectors.tmp_written:kill@5",  # the second shard of this process
        *(float(d) for d in rng.uniform(2.0, 8.0, size=3)),
        "vectors.renamed:kill@1",  # (if shards remain) or a concept-mean space file
    ]
    kills = _kill_chain(forks, root, [EXTRACT], points)
    assert kills >= 5
    wh = open_wh(root)
    # The next run goes through the installed console script.
    out = cli("--warehouse", str(root), *EXTRACT)
    assert "run 1 done" in " ".join(out.stdout.split())
    assert_same(snapshot(wh), snapshot(open_wh(reference["extracted"])))
    assert check_registered_files(wh) == 4 * 3 + 3 + 2
    assert tmp_files(wh) == []


def test_killed_sweep_reruns_to_the_reference_results(
    forks: ForkServer, reference: dict[str, Path], tmp_path: Path
) -> None:
    rng = np.random.default_rng(SEED + 2)
    root = tmp_path / "wh"
    shutil.copytree(reference["extracted"], root)
    points: list[str | float] = [float(d) for d in rng.uniform(0.2, 3.0, size=6)]
    _kill_chain(forks, root, [SWEEP], points)
    finish(forks, root, [SWEEP])
    wh = open_wh(root)
    assert_same(snapshot(wh), snapshot(open_wh(reference["swept"])))
    assert tmp_files(wh) == []
