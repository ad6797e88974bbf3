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
    DURATIONS,
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
            assert not isinstance(point, str), f"{point}: the process was not killed there"
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
    images, words, space = commands
    chains: list[tuple[list[str], list[str | float]]] = [
        (images, [float(d) for d in DURATIONS["ingest images"] * rng.uniform(0.1, 0.8, 3)]),
        (
            words,
            [
                "vectors.tmp_written:kill@1",
                "vectors.renamed:kill@1",
                float(DURATIONS["ingest words"] * rng.uniform(0.1, 0.8)),
            ],
        ),
        (space, ["vectors.renamed:kill@1", "vectors.tmp_written:kill@1"]),
    ]
    kills = 0
    for command, points in chains:
        kills += _kill_chain(forks, wh.root, [command], points)
        finish(forks, wh.root, [command])
    assert kills >= sum(len(points) for _, points in chains) - 1
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
    full = DURATIONS["extract efficientnet_lite0"]
    points: list[str | float] = [
        "vectors.tmp_written:kill@1",  # first file of the first shard, still in tmp/
        "vectors.renamed:kill@2",  # a shard half on disk, nothing registered
        "vectors.renamed:kill@3",  # a shard fully on disk, not registered
        # Seeded delays: each resumed process gets part of the way further.
        *(float(d) for d in full * rng.uniform(0.15, 0.45, 3)),
        # The next file lands in a shard or, once all shards are in, a concept-mean space.
        "vectors.renamed:kill@1",
        "vectors.tmp_written:kill@2",
    ]
    kills = _kill_chain(forks, root, [EXTRACT], points)
    assert kills >= len(points) - 1
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
    duration = DURATIONS["analyze sweep"]
    points: list[str | float] = [float(d) for d in duration * rng.uniform(0.1, 0.4, size=7)]
    kills = _kill_chain(forks, root, [SWEEP], points)
    assert kills >= len(points) - 1
    finish(forks, root, [SWEEP])
    wh = open_wh(root)
    assert_same(snapshot(wh), snapshot(open_wh(reference["swept"])))
    assert tmp_files(wh) == []
