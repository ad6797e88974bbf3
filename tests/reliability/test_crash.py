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
    ForkServer,
    assert_same,
    check_registered_files,
    cli,
    init_wh,
    open_wh,
    sample_folder,
    snapshot,
    tmp_files,
    write_word_file,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 20180601
EXTRACT = ["extract", "efficientnet_lite0", "--layers", "stem,blocks.8,fc"]
EXTRACT += ["--shard-size", "2", "--batch-size", "2", "--device", "cpu", "--workers", "0"]
SWEEP = ["analyze", "sweep", "--models", "efficientnet_lite0", "--words", "words"]
SWEEP += ["--permutations", "200", "--seed", "7", "--no-random"]
N_CONCEPTS = 4  # 2 images each: 4 shards of 2 for extraction


class Inputs:
    """Generated inputs shared by the module: images (links to samples), words, a space."""

    def __init__(self, root: Path, samples_dir: Path) -> None:
        self.images = sample_folder(samples_dir, root / "images", N_CONCEPTS, 2)
        self.wnids = sorted({p.name.split("_")[0] for p in self.images.iterdir()})
        self.words = root / "words.txt"
        self.mapping = write_word_file(self.words, self.wnids, dim=12, seed=1)
        rng = np.random.default_rng(2)
        self.space = root / "space.csv"
        rows = [",".join(["wnid", *(f"f{i}" for i in range(5))])]
        rows += [",".join([w, *(f"{v:.5f}" for v in rng.normal(size=5))]) for w in self.wnids]
        self.space.write_text("\n".join(rows) + "\n")

    def ingest_commands(self) -> list[list[str]]:
        return [
            ["ingest", "images", str(self.images), "--no-wordnet"],
            ["ingest", "words", "words", str(self.words), "-f", "glove"]
            + ["--mapping", str(self.mapping)],
            ["ingest", "space", "ratings", str(self.space)],
        ]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, samples_dir: Path) -> Inputs:
    return Inputs(tmp_path_factory.mktemp("inputs"), samples_dir)


@pytest.fixture(scope="module")
def reference(
    tmp_path_factory: pytest.TempPathFactory, forks: ForkServer, inputs: Inputs
) -> dict[str, Path]:
    """Uninterrupted runs: the warehouse after ingest, after extract and after the sweep."""
    base = tmp_path_factory.mktemp("reference")
    wh = init_wh(base / "ingested")
    _finish(forks, wh.root, inputs.ingest_commands())
    shutil.copytree(wh.root, base / "extracted")
    _finish(forks, base / "extracted", [EXTRACT])
    shutil.copytree(base / "extracted", base / "swept")
    _finish(forks, base / "swept", [SWEEP])
    return {"ingested": wh.root, "extracted": base / "extracted", "swept": base / "swept"}


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


def _finish(forks: ForkServer, root: Path, commands: list[list[str]]) -> None:
    for command in commands:
        child = forks.run("--warehouse", str(root), *command)
        assert child.code == 0, f"semwh {' '.join(command)} failed:\n{child.stderr}"


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
    _finish(forks, wh.root, commands)
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
    _finish(forks, root, [SWEEP])
    wh = open_wh(root)
    assert_same(snapshot(wh), snapshot(open_wh(reference["swept"])))
    assert tmp_files(wh) == []
