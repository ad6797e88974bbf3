# ruff: noqa: F811  (the fixtures of test_analyze are imported by name)
"""Per-subject RDMs as targets: ingest (CSV, Parquet, .npy), noise ceilings equal to
rsatoolbox's, RSA / 2 vs 2 / differences against them, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from semwh import runs
from semwh.analyze import rsa, similarity_matrix, two_vs_two
from semwh.errors import ConfigError, InputError
from semwh.ingest import ingest_rdm
from semwh.results.named import run_query
from semwh.results.report import build_report, report_data
from semwh.results.report.figures import slug
from semwh.runs.difference import diff
from semwh.runs.verify import verify
from semwh.vectors import load_space
from semwh.warehouse.models import Concept, NoiseCeiling
from semwh.warehouse.readonly import run_sql
from tests.conftest import run_cli
from tests.factories import noisy_rdms
from tests.integration.test_analyze import (  # noqa: F401  (fixtures)
    N_CONCEPTS,
    template,
    warehouse,
    wnids,
    world,
)

pytestmark = pytest.mark.integration

N_SUBJECTS = 4


def subject_rdms(words: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each subject's Euclidean dissimilarities of the word vectors plus their own noise."""
    return noisy_rdms(words, N_SUBJECTS, seed, noise=0.7)


def hypernym_path(index: int, wnid: str) -> str:
    """Two branches under one root: even concepts under n00000002, odd under n00000001."""
    branch = "n00000002" if index % 2 == 0 else "n00000001"
    return json.dumps(["n00000000", branch, wnid])


def add_concepts(wh) -> None:
    with wh.session() as session:
        for i, w in enumerate(wnids()):
            session.add(
                Concept(
                    concept=w, name=f"concept {i}", origin="file", hypernym_path=hypernym_path(i, w)
                )
            )


def write_csv(path: Path, keys: list[str], stack: np.ndarray, shuffle: int = 0) -> None:
    """Long form: subject, wnid (the key column's older name), one column per key; rows and
    columns in shuffled order."""
    rng = np.random.default_rng(shuffle)
    columns = list(rng.permutation(len(keys)))
    records: dict[str, list] = {"subject": [], "wnid": []}
    records.update({keys[c]: [] for c in columns})
    for s in range(len(stack)):
        for r in rng.permutation(len(keys)):
            records["subject"].append(f"s{s}")
            records["wnid"].append(keys[r])
            for c in columns:
                records[keys[c]].append(float(stack[s, r, c]))
    table = pa.table(records)
    if path.suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)


def test_rdm_targets_with_noise_ceilings_rsa_2v2_and_differences(
    warehouse, world, tmp_path
) -> None:
    import rsatoolbox
    from rsatoolbox.inference import boot_noise_ceiling

    add_concepts(warehouse)
    stack = subject_rdms(world["words"])
    keys = wnids()
    write_csv(tmp_path / "rdms.csv", keys, stack, shuffle=1)
    report = ingest_rdm(warehouse, "subjects", tmp_path / "rdms.csv")
    assert (report.n_concepts, report.n_subjects) == (N_CONCEPTS, N_SUBJECTS)
    space = load_space(warehouse, "subjects")
    assert space.kind == "rdm" and space.matrix.shape == (N_CONCEPTS, N_SUBJECTS * N_CONCEPTS)

    iu = np.triu_indices(N_CONCEPTS, 1)
    rdms = rsatoolbox.rdm.RDMs(np.stack([d[iu] for d in stack]))
    with warehouse.session() as session:
        stored = {c.method: c for c in session.query(NoiseCeiling).all()}
    for method, theirs in (("spearman", "spearman"), ("pearson", "corr")):
        lower, upper = boot_noise_ceiling(rdms, method=theirs)
        assert stored[method].lower == pytest.approx(lower, abs=1e-9)
        assert stored[method].upper == pytest.approx(upper, abs=1e-9)
        assert stored[method].n_subjects == N_SUBJECTS

    # The same matrices from Parquet and from .npy with a key list give the same space.
    write_csv(tmp_path / "rdms.parquet", keys, stack, shuffle=2)
    ingest_rdm(warehouse, "subjects-pq", tmp_path / "rdms.parquet")
    np.save(tmp_path / "rdms.npy", stack)
    (tmp_path / "keys.txt").write_text("\n".join(keys) + "\n")
    env = {"SEMWH_WAREHOUSE": str(warehouse.root)}
    out = run_cli(
        "ingest",
        "rdm",
        "subjects-npy",
        str(tmp_path / "rdms.npy"),
        "--keys",
        str(tmp_path / "keys.txt"),
        env=env,
    )
    assert "4 subject(s)" in out.stdout and "spearman noise ceiling" in out.stdout
    for other in ("subjects-pq", "subjects-npy"):
        np.testing.assert_array_equal(load_space(warehouse, other).matrix, space.matrix)

    # RSA and 2 vs 2 against the RDM are the means over subjects of the comparisons with
    # each subject's matrix (rsatoolbox's eval_fixed), each subject's value stored.
    layer = world["layers"]["toy"][3]
    sim_layer = similarity_matrix(load_space(warehouse, layer).matrix)
    row = runs.compare(warehouse, layer, "subjects", "rsa", permutations=20, seed=1)
    per_subject = [rsa(sim_layer, -d).rho for d in stack]
    assert row.rho == pytest.approx(np.mean(per_subject), abs=1e-12)
    assert (row.target, row.n_subjects) == ("subjects:none", N_SUBJECTS)
    with warehouse.session() as session:
        stored_subjects = runs.result_rows.subject_values(session, "rsa", row.result_id)
    assert [name for name, _ in stored_subjects] == [f"s{i}" for i in range(N_SUBJECTS)]
    np.testing.assert_allclose([v for _, v in stored_subjects], per_subject, atol=1e-12)
    two = runs.compare(warehouse, layer, "subjects", "2v2", seed=1)
    assert two.accuracy == pytest.approx(
        np.mean([two_vs_two(sim_layer, -d).accuracy for d in stack]), abs=1e-12
    )
    # The ceiling over all concepts is the one stored at ingest, on the result's scale.
    assert row.ceiling_lower == pytest.approx(stored["spearman"].lower, abs=1e-12)
    assert row.ceiling_upper == pytest.approx(stored["spearman"].upper, abs=1e-12)
    assert row.rho < row.ceiling_upper
    shallow = runs.compare(warehouse, world["layers"]["toy"][0], "subjects", "rsa", seed=1)
    d = diff(
        warehouse,
        f"rsa:{row.result_id}",
        f"rsa:{shallow.result_id}",
        bootstrap=10,
        permutations=20,
        seed=0,
    )
    assert d.difference == pytest.approx(row.rho - shallow.rho, abs=1e-12)
    # Two results against the same subjects: paired tests over subjects beside the concepts'.
    with warehouse.session() as session:
        deep_values = [v for _, v in runs.result_rows.subject_values(session, "rsa", row.result_id)]
        shallow_values = [
            v for _, v in runs.result_rows.subject_values(session, "rsa", shallow.result_id)
        ]
        _, paired = runs.result_rows.subject_tables(session, "diff", d.result_id)
    by_method = {r["method"]: r for r in paired.to_pylist()}
    assert set(by_method) == {"paired_t", "paired_wilcoxon", "paired_sign_flip"}
    assert {r["units"] for r in by_method.values()} == {"subjects"}
    from scipy import stats

    expected = stats.ttest_rel(deep_values, shallow_values)
    assert by_method["paired_t"]["p_value"] == pytest.approx(expected.pvalue, rel=1e-9)
    assert (
        by_method["paired_sign_flip"]["exact"]
        and by_method["paired_sign_flip"]["n_resamples"] == 2**N_SUBJECTS
    )
    assert verify(warehouse, every=True).ok

    with pytest.raises(ConfigError, match="has no feature vectors"):
        runs.measure(warehouse, layer, "subjects", "cka")
    with pytest.raises(ConfigError, match="RDMs are targets"):
        runs.compare(warehouse, "subjects", layer, "rsa")
    rows = run_sql(warehouse, "SELECT kind FROM spaces WHERE name = 'subjects'").table
    assert rows.to_pylist() == [{"kind": "rdm"}]


def test_malformed_rdm_files_are_refused_with_the_reason(warehouse, world, tmp_path) -> None:
    add_concepts(warehouse)
    stack = subject_rdms(world["words"])
    stack[1, 0, 3] += 1.0
    write_csv(tmp_path / "bad.csv", wnids(), stack)
    with pytest.raises(InputError, match="subject 2 is not symmetric"):
        ingest_rdm(warehouse, "bad", tmp_path / "bad.csv")
    np.save(tmp_path / "m.npy", stack[0])
    with pytest.raises(InputError, match=r"needs --keys FILE \(one concept key per line\)"):
        ingest_rdm(warehouse, "bad", tmp_path / "m.npy")
    (tmp_path / "keys.txt").write_text("\n".join(["n99999999", *wnids()[1:]]))
    sym = subject_rdms(world["words"])[0]
    np.save(tmp_path / "m.npy", sym)
    with pytest.raises(InputError) as err:
        ingest_rdm(warehouse, "bad", tmp_path / "m.npy", keys=tmp_path / "keys.txt")
    assert (
        f"RDM file {tmp_path / 'm.npy'}: 1 unknown concept key, neither the id, the name nor the "
        "WordNet id of a registered concept: 'n99999999'"
    ) in str(err.value)


def test_subject_ids_are_text_and_a_constant_subject_is_named(warehouse, world, tmp_path) -> None:
    add_concepts(warehouse)
    stack = subject_rdms(world["words"])
    write_csv(tmp_path / "ids.csv", wnids(), stack)
    lines = (tmp_path / "ids.csv").read_text().splitlines()
    renamed = {'"s0"': "01", '"s1"': "1.0"}

    def with_subjects(names: dict[str, str]) -> str:
        rows = [lines[0]]
        for line in lines[1:]:
            first, rest = line.split(",", 1)
            rows.append(f"{names.get(first, first)},{rest}")
        return "\n".join(rows) + "\n"

    (tmp_path / "ids.csv").write_text(with_subjects(renamed))
    ingest_rdm(warehouse, "ids", tmp_path / "ids.csv")
    assert load_space(warehouse, "ids").subjects == ("01", "1.0", "s2", "s3")
    (tmp_path / "empty.csv").write_text(with_subjects({'"s0"': '""'}))
    with pytest.raises(InputError, match="empty subject id"):
        ingest_rdm(warehouse, "bad", tmp_path / "empty.csv")
    flat = stack.copy()
    flat[2] = 1.0
    for d in flat:
        np.fill_diagonal(d, 0.0)
    write_csv(tmp_path / "flat.csv", wnids(), flat)
    with pytest.raises(InputError, match="every dissimilarity of subject 's2' is the same"):
        ingest_rdm(warehouse, "bad", tmp_path / "flat.csv")


def test_matrices_that_are_not_dissimilarities_are_refused(warehouse, world, tmp_path) -> None:
    """A similarity matrix read as dissimilarities would flip the sign of every RSA."""
    add_concepts(warehouse)
    stack = subject_rdms(world["words"])
    similarity = np.exp(-stack)  # 1 on the diagonal
    write_csv(tmp_path / "sim.csv", wnids(), similarity)
    with pytest.raises(
        InputError, match=r"sim.csv: subject 1 has a non-zero diagonal.*--similarity"
    ):
        ingest_rdm(warehouse, "bad", tmp_path / "sim.csv")
    assert ingest_rdm(warehouse, "sim", tmp_path / "sim.csv", similarity=True).n_subjects == 4
    write_csv(tmp_path / "d.csv", wnids(), stack)
    with pytest.raises(InputError, match=r"subject 1 has a non-zero 1 - diagonal.*drop --sim"):
        ingest_rdm(warehouse, "bad", tmp_path / "d.csv", similarity=True)
    shifted = stack.copy()
    shifted[2] -= stack[2].mean()
    np.fill_diagonal(shifted[2], 0.0)
    write_csv(tmp_path / "neg.csv", wnids(), shifted)
    with pytest.raises(InputError, match=r"subject 3 has negative dissimilarities.*--similarity"):
        ingest_rdm(warehouse, "bad", tmp_path / "neg.csv")
    # A repeated row is named as a duplicate; pandas' index column is not a concept.
    table = pacsv.read_csv(tmp_path / "d.csv")
    doubled = pa.concat_tables([table, table.slice(0, 1)])
    pq.write_table(doubled, tmp_path / "dup.parquet")
    first = table.column("wnid")[0].as_py()
    with pytest.raises(InputError, match=f"duplicate row for concept {first}"):
        ingest_rdm(warehouse, "bad", tmp_path / "dup.parquet")
    indexed = table.append_column("__index_level_0__", pa.array(range(table.num_rows)))
    pq.write_table(indexed, tmp_path / "indexed.parquet")
    assert ingest_rdm(warehouse, "indexed", tmp_path / "indexed.parquet").n_subjects == 4


def test_report_draws_ceiling_bands_and_heatmaps_in_wordnet_order(
    warehouse, world, tmp_path
) -> None:
    add_concepts(warehouse)
    write_csv(tmp_path / "rdms.csv", wnids(), subject_rdms(world["words"]))
    ingest_rdm(warehouse, "subjects", tmp_path / "rdms.csv")
    runs.sweep(
        warehouse,
        ["toy"],
        ["subjects"],
        tests=["rsa"],
        permutations=5,
        seed=1,
        include_random=False,
    )
    layer = world["layers"]["toy"][2]
    ordered = run_query(warehouse, "space_vectors", {"space": layer}).table.to_pylist()
    keys = wnids()
    assert [r["concept"] for r in ordered] == keys[1::2] + keys[0::2]
    data = report_data(warehouse, measures=["rsa"], heatmaps=["subjects", f"{layer}:cosine"])
    assert {(c["space"], c["method"]) for c in data.ceilings} == {
        ("subjects", "spearman"),
        ("subjects", "pearson"),
    }
    assert {r["n_concepts"] for r in data.measures} == {N_CONCEPTS}
    info = build_report(
        warehouse, tmp_path / "report", measures=["rsa"], heatmaps=["subjects", f"{layer}:cosine"]
    )
    names = {p.name for p in info.figures}
    assert {
        "rsa_subjects.png",
        "heatmap_subjects_pearson.png",
        f"heatmap_{slug(layer)}_cosine.svg",
    } <= names, names
    # The RSA of the layers against the RDM target is drawn once, its noise ceiling a band
    # on the same axes (no duplicate measure panel), and no empty 2 vs 2 figure: the sweep
    # had no 2 vs 2.
    assert not names & {"rsa_spearman_subjects.png", "2v2_subjects.png"}, names
    figures = info.html.parent / "figures"
    svg = (figures / "rsa_subjects.svg").read_text()
    assert ">noise ceiling<" in svg
    low, high = data.measures[0]["ceiling_lower"], data.measures[0]["ceiling_upper"]
    assert f"lower to upper bound: {low:.3g} to {high:.3g}" in info.html.read_text()
    page = info.html.read_text()
    assert "toy/block2: cosine similarity, concepts in WordNet hypernym order" in page
    assert "subjects: mean dissimilarity of the subjects" in page
