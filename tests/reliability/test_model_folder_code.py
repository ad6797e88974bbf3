"""No code from a model folder: real tiny checkpoints (save_pretrained) whose configs ask for
their own Python through ``auto_map`` are refused in one line naming the file, before any
model library reads them; the folder's code never runs and no command prompts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from semwh.custom_code import refuse_custom_code
from semwh.errors import InputError
from semwh.ingest.concepts import ingest_concepts
from semwh.ingest.images import ingest_images
from tests.conftest import migrated_warehouse, run_cli, semwh_bin
from tests.reliability.conftest import sample_folder

pytestmark = pytest.mark.integration
transformers = pytest.importorskip("transformers")

# Importing this module writes a marker into the model folder: evidence that its code ran
# (transformers imports a copy of it from its modules cache).
CUSTOM_CODE = """\
from pathlib import Path
Path({marker!r}).write_text("the folder's code ran")
from transformers import PretrainedConfig, PreTrainedModel
class CustomConfig(PretrainedConfig):
    model_type = "semwh-custom"
class CustomModel(PreTrainedModel):
    config_class = CustomConfig
"""
AUTO_MAP = {"AutoConfig": "custom_code.CustomConfig", "AutoModel": "custom_code.CustomModel"}
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "dog", "cat", "bird", "fish", "a", "photo"]


def _add_code(folder: Path, **config: object) -> Path:
    (folder / "custom_code.py").write_text(CUSTOM_CODE.format(marker=str(folder / "RAN")))
    path = folder / "config.json"
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({**saved, "auto_map": AUTO_MAP, **config}, indent=2))
    return folder


def _text_folder(folder: Path) -> Path:
    """A random tiny BERT with a WordPiece tokenizer as a sentence-transformers folder."""
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    config = transformers.BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    transformers.BertModel(config).save_pretrained(folder)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text('{"max_seq_length": 16}')
    (folder / "1_Pooling" / "config.json").write_text(
        '{"word_embedding_dimension": 16, "pooling_mode_mean_tokens": true}'
    )
    return folder


def _vision_folder(folder: Path) -> Path:
    """A random tiny ViT and its image processor."""
    config = transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=32,
    )  # fmt: skip
    transformers.ViTModel(config).save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "ViTImageProcessor",
                "do_resize": True,
                "size": {"height": 32, "width": 32},
                "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5],
            }
        )
    )
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory, samples_dir: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("model-code")
    wh = migrated_warehouse(root / "wh")
    ingest_images(wh, sample_folder(samples_dir, root / "images", 4, 1), wordnet=False)
    wnids = root / "wnids.txt"
    wnids.write_text("n02084071 dog\nn02121808 cat\nn01503061 bird\nn02512053 fish\n")
    ingest_concepts(wh, wnids_file=wnids, wordnet=False)
    return {
        "wh": wh.root,
        "text": _add_code(_text_folder(root / "text")),
        "vision": _add_code(_vision_folder(root / "vision")),
    }


def _refused(proc: subprocess.CompletedProcess[str], file: Path) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert len(lines) == 1 and str(file) in lines[0] and "auto_map" in lines[0], proc.stderr
    assert "[y/N]" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("folder", "command"),
    [
        ("text", ["embed", "{dir}"]),
        ("text", ["embed", "hf:{dir}"]),
        ("text", ["ingest", "words", "st", "{dir}", "--format", "sentence-transformers"]),
        ("vision", ["models", "hf:{dir}"]),
        ("vision", ["extract", "hf:{dir}", "--dry-run"]),
        ("vision", ["extract", "hf:{dir}", "--device", "cpu", "--workers", "0"]),
    ],
)
def test_a_folder_with_auto_map_is_refused_by_every_command(
    folders: dict[str, Path], folder: str, command: list[str]
) -> None:
    where = folders[folder]
    args = [part.format(dir=where) for part in command]
    proc = run_cli("--warehouse", str(folders["wh"]), *args, check=False)
    _refused(proc, where / "config.json")
    assert not (where / "RAN").exists()


def test_answering_yes_cannot_run_the_code_of_an_unknown_model_type(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    # A model type transformers does not know: left to decide, it asks "[y/N]" on stdin.
    folder = tmp_path / "unknown"
    shutil.copytree(folders["vision"], folder)
    _add_code(folder, model_type="semwh-custom")
    proc = subprocess.run(
        [semwh_bin(), "--warehouse", str(folders["wh"]), "models", f"hf:{folder}"],
        input="y\n" * 4,
        env={**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    _refused(proc, folder / "config.json")
    assert not (folder / "RAN").exists()


def test_sentence_transformers_modules_outside_the_package_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "st"
    folder.mkdir()
    (folder / "custom_code.py").write_text(CUSTOM_CODE.format(marker=str(folder / "RAN")))
    modules = [{"idx": 0, "name": "0", "path": "", "type": "custom_code.CustomModel"}]
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(InputError, match=r"modules\.json: module 'custom_code\.CustomModel'"):
        refuse_custom_code(folder)
    # A tokenizer config may ask for code too, and a module folder's config.
    (folder / "modules.json").write_text(
        json.dumps(
            [
                {
                    "idx": 0,
                    "name": "0",
                    "path": "0_T",
                    "type": "sentence_transformers.models.Transformer",
                }
            ]
        )
    )
    (folder / "0_T").mkdir()
    (folder / "0_T" / "tokenizer_config.json").write_text(
        json.dumps({"auto_map": {"AutoTokenizer": ["custom_code.Tok", None]}})
    )
    with pytest.raises(InputError, match=r"0_T/tokenizer_config\.json: .*auto_map"):
        refuse_custom_code(folder)
    (folder / "0_T" / "tokenizer_config.json").write_text('{"do_lower_case": true}')
    refuse_custom_code(folder)
    assert not (folder / "RAN").exists()
