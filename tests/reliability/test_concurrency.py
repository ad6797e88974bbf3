"""Readers and a second writer while an extraction job runs: no corruption, clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from semwh.errors import WarehouseBusyError
from semwh.vectors import load_space
from semwh.warehouse.readonly import run_sql
from tests.reliability.conftest import (
    EXTRACT,
    ForkServer,
    Inputs,
    check_registered_files,
    open_wh,
    snapshot,
    tmp_files,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_sql_reads_and_a_second_writer_during_extraction(
    forks: ForkServer, inputs: Inputs, reference: dict[str, Path], tmp_path: Path
) -> None:
    root = tmp_path / "wh"
    shutil.copytree(reference["ingested"], root)
    wh = open_wh(root)
    job = forks.spawn("--warehouse", str(root), *EXTRACT, "--shard-pause", "0.5")
    twin = forks.spawn("--warehouse", str(root), *EXTRACT, "--shard-pause", "0.3")
    space = tmp_path / "other.csv"
    rng = np.random.default_rng(3)
    space.write_text(
        "wnid,a,b,c\n"
        + "".join(f"{w},{','.join(map(str, rng.normal(size=3)))}\n" for w in inputs.concept_ids)
    )
    writer = None
    reads = busy = 0
    shards: list[int] = []
    while forks.wait(job, timeout=0) is None or forks.wait(twin, timeout=0) is None:
        try:
            result = run_sql(
                wh, "SELECT (SELECT count(*) FROM extraction_shards), count(*) FROM vectors"
            )
        except WarehouseBusyError as exc:
            assert "warehouse busy" in str(exc) and "registry.duckdb" in str(exc)
            busy += 1
        else:
            reads += 1
            n_shards, n_rows = result.rows()[0]
            shards.append(n_shards)
            # Only whole shards are visible: 3 layers x 2 images per registered shard, plus
            # the concept vectors of the words and ratings spaces (4 concepts each).
            assert n_rows >= 8 + 6 * n_shards
        if writer is None and shards and shards[-1] >= 1:
            writer = forks.spawn("--warehouse", str(root), "ingest", "space", "other", str(space))
    assert job.code == 0, job.stderr
    assert twin.code == 0 or "warehouse busy" in twin.stderr, twin.stderr
    assert shards == sorted(shards), "registered shards went backwards"
    assert reads >= 5 and reads >= 4 * busy, f"{reads} reads succeeded, {busy} were busy"

    assert writer is not None
    forks.wait(writer, timeout=120)
    if writer.code != 0:
        # A second writer that finds the registry held says so in one line.
        assert writer.code == 1 and "warehouse busy" in writer.stderr, writer.stderr
        writer = forks.run("--warehouse", str(root), "ingest", "space", "other", str(space))
        assert writer.code == 0, writer.stderr
    assert load_space(wh, "other").concept_ids == inputs.concept_ids
    check_registered_files(wh)
    got = snapshot(wh)
    expected = snapshot(open_wh(reference["extracted"]))
    for table in ("extraction_shards", "extraction_runs", "predictions", "layers", "images"):
        assert got[table] == expected[table], table
    other = [row for row in got["vectors"] if row[0] != "other"]
    assert other == expected["vectors"]
    assert tmp_files(wh) == []
