"""Vocabulary pruning: fewer embedding rows, a re-numbered tokenizer, the same predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.transformer import SlimConfig, SlimPajamaModel
from slimpajama_gui.core.vocabulary import prune_vocabulary


def tiny_model(seed: int = 0, **overrides) -> SlimPajamaModel:
    torch.manual_seed(seed)
    base = dict(
        vocab_size=40, hidden_size=32, layer_heads=[4, 4, 4], head_dim=8,
        layer_ffn=[64, 64, 64], max_position_embeddings=32, hidden_dropout=0.0,
        attention_dropout=0.0,
    )  # fmt: skip
    base.update(overrides)
    return SlimPajamaModel(SlimConfig(**base)).eval()


TEXTS = [
    "a gripping, funny and moving film.",
    "the plot is dull and the acting is worse",
    "I loved every minute of it!",
    "not worth the ticket price",
]


@pytest.fixture(scope="module")
def minilm_tokenizer_folder() -> Path:
    from slimpajama_gui.core.models import packaged_minilm_path

    return packaged_minilm_path()


def test_prune_vocabulary_gives_same_logits_with_remapped_tokenizer(
    tmp_path, minilm_tokenizer_folder
):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    model = tiny_model(vocab_size=30522, hidden_size=16, head_dim=4, layer_ffn=[32] * 3)
    out = tmp_path / "tok"
    small, report = prune_vocabulary(
        model,
        minilm_tokenizer_folder,
        iter(TEXTS),
        out,
        extra_ids=[2000],
        eval_texts=["a film about xylophones", "loved it"],
    )
    assert report.original == 30522 and report.kept == small.config.vocab_size < 60
    assert report.unk_rate_on_texts == 0.0
    assert 0 < report.changed_on_eval <= 0.5  # "loved it" only uses kept pieces
    assert 2000 in report.kept_ids
    old_tok = AutoTokenizer.from_pretrained(minilm_tokenizer_folder, local_files_only=True)
    new_tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert len(new_tok) == small.embeddings.word_embeddings.num_embeddings == report.kept
    assert len((out / "vocab.txt").read_text(encoding="utf-8").splitlines()) == report.kept
    # the tokenizer.json on its own (the Rust tokenizer) agrees with vocab.txt
    raw = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert raw.get_vocab_size() == report.kept
    assert raw.padding["pad_id"] == 0
    raw.no_padding()
    assert raw.encode(TEXTS[0]).ids == new_tok(TEXTS[0])["input_ids"]
    assert small.config.pad_token_id == new_tok.pad_token_id == 0
    assert new_tok.cls_token_id == report.id_map[old_tok.cls_token_id]
    a = old_tok(TEXTS, padding=True, return_tensors="pt")
    b = new_tok(TEXTS, padding=True, return_tensors="pt")
    assert torch.equal(report.id_map[a["input_ids"]], b["input_ids"])
    with torch.no_grad():
        torch.testing.assert_close(small(**b).logits, model(**a).logits, rtol=0, atol=0)
    unseen = new_tok("xylophone quintessence")
    tokens = new_tok.convert_ids_to_tokens(unseen["input_ids"])
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and "[UNK]" in tokens
    with torch.no_grad():
        small(torch.tensor([unseen["input_ids"]]))  # every id fits the new embedding
    saved = small.save_pretrained(tmp_path / "model", tokenizer_from=out)
    again = SlimPajamaModel.from_pretrained(saved)
    assert again.config.vocab_size == report.kept
    assert len(AutoTokenizer.from_pretrained(saved, local_files_only=True)) == report.kept


def test_prune_vocabulary_refusals(tmp_path, minilm_tokenizer_folder):
    model = tiny_model(vocab_size=30522, hidden_size=16, head_dim=4, layer_ffn=[32] * 3)
    with pytest.raises(UserError, match="overwrite the source"):
        prune_vocabulary(model, minilm_tokenizer_folder, TEXTS, minilm_tokenizer_folder)
    with pytest.raises(UserError, match="extra_ids"):
        prune_vocabulary(model, minilm_tokenizer_folder, TEXTS, tmp_path / "a", extra_ids=[40000])
    with pytest.raises(UserError, match="texts"):
        prune_vocabulary(model, minilm_tokenizer_folder, [], tmp_path / "b")
    with pytest.raises(UserError, match="rows"):
        prune_vocabulary(tiny_model(), minilm_tokenizer_folder, TEXTS, tmp_path / "c")
    bpe = tmp_path / "bpe"
    bpe.mkdir()
    (bpe / "tokenizer.json").write_text(
        json.dumps({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}), encoding="utf-8"
    )
    with pytest.raises(UserError, match="WordPiece"):
        prune_vocabulary(model, bpe, TEXTS, tmp_path / "d")
