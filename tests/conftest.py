"""Shared fixtures: an isolated home for every test, tiny models built on the spot."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SST2 = REPO.parent / "shared" / "data" / "sst2"

# Nothing in the suite may reach the network; transformers must not even try.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Each test gets its own data folder and an empty Hugging Face cache."""
    root = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("SLIMPAJAMA_HOME", str(root / "slimpajama"))
    monkeypatch.setenv("HF_HUB_CACHE", str(root / "hf-cache"))
    monkeypatch.setenv("HF_HOME", str(root / "hf-home"))
    return root


TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [
    w
    for w in (
        "the a an is was it this that movie film story plot actor good great bad awful "
        "boring fun funny love hate not very really and but of to in on with"
    ).split()
]


def write_tiny_bert(
    folder: Path, *, layers: int = 2, hidden: int = 32, heads: int = 4, labels: int = 2
) -> Path:
    """A small random BertForSequenceClassification saved as safetensors, with a tokenizer."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(TINY_VOCAB) + "\n", encoding="utf-8")
    config = BertConfig(
        vocab_size=len(TINY_VOCAB),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 2,
        max_position_embeddings=64,
        num_labels=labels,
    )
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    # transformers 5 ignores vocab_file here (the tokenizer kept only its 5 special
    # tokens and read every word as [UNK]); the vocabulary itself is what it uses.
    tokenizer = BertTokenizerFast(
        vocab={w: i for i, w in enumerate(TINY_VOCAB)}, do_lower_case=True
    )
    assert tokenizer("the movie")["input_ids"][1:3] == [5, 13]
    tokenizer.save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["model_type"] == "bert"
    return folder


@pytest.fixture
def tiny_bert(tmp_path) -> Path:
    return write_tiny_bert(tmp_path / "tiny-bert")


def write_tiny_minilm_vocab(
    folder: Path, *, layers: int = 2, hidden: int = 32, heads: int = 4
) -> Path:
    """A small random BERT classifier that uses the packaged MiniLM tokenizer (30,522 ids).

    Real words map to real ids, so it can learn the demo data in a few seconds.
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from slimpajama_gui.core.model.catalog import packaged_minilm_path
    from slimpajama_gui.core.model.saving import copy_tokenizer_files

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    config = BertConfig(
        vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=hidden * 2, max_position_embeddings=128, num_labels=2,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(folder, safe_serialization=True)
    copy_tokenizer_files(packaged_minilm_path(), folder)
    return folder


@pytest.fixture(scope="session")
def tiny_minilm(tmp_path_factory) -> Path:
    """Read-only: tests copy it if they need to change it."""
    return write_tiny_minilm_vocab(tmp_path_factory.mktemp("models") / "tiny-minilm")
