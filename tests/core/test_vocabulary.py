"""Vocabulary pruning: fewer embedding rows, a re-numbered tokenizer, the same predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.config import EncoderConfig
from slimpajama_gui.core.model.encoder import EncoderClassifier
from slimpajama_gui.core.techniques.prune.vocabulary import prune_vocabulary


def tiny_model(seed: int = 0, **overrides) -> EncoderClassifier:
    torch.manual_seed(seed)
    base = dict(
        vocab_size=40, hidden_size=32, layer_heads=[4, 4, 4], head_dim=8,
        layer_ffn=[64, 64, 64], max_position_embeddings=32, hidden_dropout=0.0,
        attention_dropout=0.0,
    )  # fmt: skip
    base.update(overrides)
    return EncoderClassifier(EncoderConfig(**base)).eval()


TEXTS = [
    "a gripping, funny and moving film.",
    "the plot is dull and the acting is worse",
    "I loved every minute of it!",
    "not worth the ticket price",
]


@pytest.fixture(scope="module")
def minilm_tokenizer_folder() -> Path:
    from slimpajama_gui.core.model.catalog import packaged_minilm_path

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
    assert "\n" not in (out / "tokenizer.json").read_text(encoding="utf-8")  # compact JSON
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
    again = EncoderClassifier.from_pretrained(saved)
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


# ------------------------------------------------- the promise, checked on what the model reads


def encoded_logits(model, tokenizer, texts, pairs, max_length):
    from slimpajama_gui.core import data as data_mod

    enc = data_mod.encode(texts, tokenizer, max_length, pairs)
    types = enc.token_type_ids or [None] * len(enc)
    rows = [
        {"input_ids": i, "token_type_ids": t} for i, t in zip(enc.input_ids, types, strict=True)
    ]
    batch = data_mod.collate(rows, tokenizer.pad_token_id)
    with torch.no_grad():
        return enc, model(**batch).logits


def test_pairs_cut_by_max_length_read_the_same_tokens(tmp_path, minilm_tokenizer_folder):
    """Which tokens truncation drops from a pair depends on the length of both texts, so
    a word past the cut must keep its pieces too (here counting only the ids the model
    reads would turn the rare words past the cut into [UNK] and move the cut)."""
    from slimpajama_gui.core.model.tokenizers import load_tokenizer

    texts = ["a plot plot a a the xylophone harpsichord tchaikovsky", "a good film"]
    pairs = ["story a a good fine plot good film a harpsichord", "loved it"]
    model = tiny_model(vocab_size=30522, hidden_size=16, head_dim=4, layer_ffn=[32] * 3)
    out = tmp_path / "tok"
    small, report = prune_vocabulary(
        model, minilm_tokenizer_folder, texts, out, pairs=pairs, max_length=12
    )
    old, new = load_tokenizer(minilm_tokenizer_folder), load_tokenizer(out)
    enc_old, before = encoded_logits(model, old, texts, pairs, 12)
    enc_new, after = encoded_logits(small, new, texts, pairs, 12)
    assert enc_old.truncated_count == 1
    assert [report.id_map[ids].tolist() for ids in enc_old.input_ids] == enc_new.input_ids
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    assert report.train_rows == 2 and report.unk_rate_on_texts == 0.0


def test_figures_that_cannot_be_measured_are_none_with_the_reason(
    tmp_path, minilm_tokenizer_folder
):
    model = tiny_model(vocab_size=30522, hidden_size=16, head_dim=4, layer_ffn=[32] * 3)
    _, report = prune_vocabulary(model, minilm_tokenizer_folder, TEXTS, tmp_path / "a")
    assert report.eval_rows is None
    assert report.unk_rate_on_eval is report.changed_on_eval is None
    assert "no eval rows" in report.note and "no eval rows" in report.sentence()
    # Texts without a single token: no [UNK] rate to give, rather than 0.
    _, empty = prune_vocabulary(
        model, minilm_tokenizer_folder, ["", " "], tmp_path / "b", eval_texts=["", "film"]
    )
    assert empty.unk_rate_on_texts is None and empty.train_rows == 2
    assert empty.unk_rate_on_eval == 1.0 and empty.changed_on_eval == 0.5
    assert "not measured" in empty.sentence()


def test_a_train_row_that_would_read_other_tokens_makes_pruning_refuse(
    tmp_path, minilm_tokenizer_folder, monkeypatch
):
    """If the written tokenizer read the train rows differently (here: it stopped
    lowercasing), pruning says so instead of handing back a model that reads other ids."""
    from tokenizers import normalizers

    from slimpajama_gui.core.techniques.prune import vocabulary

    out = tmp_path / "tok"
    real = vocabulary._load_tokenizer

    def case_sensitive(folder):
        tok = real(folder)
        if Path(folder) == out:
            tok.backend_tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False)
        return tok

    monkeypatch.setattr(vocabulary, "_load_tokenizer", case_sensitive)
    model = tiny_model(vocab_size=30522, hidden_size=16, head_dim=4, layer_ffn=[32] * 3)
    with pytest.raises(UserError, match=r"1 of 2 train rows .*row 2: 'a film' / 'Kyoto rain'"):
        prune_vocabulary(
            model, minilm_tokenizer_folder, ["a film", "a film"], out, pairs=["rain", "Kyoto rain"]
        )


def test_added_tokens_in_the_second_column_are_kept(tmp_path, minilm_tokenizer_folder):
    from slimpajama_gui.core.model.tokenizers import load_tokenizer

    source = tmp_path / "added"
    tok = load_tokenizer(minilm_tokenizer_folder)
    assert tok.add_tokens(["xylozebra"]) == 1
    tok.save_pretrained(source)
    texts, pairs = ["a good film", "not worth it"], ["a xylozebra in Kyoto", "xylozebra"]
    model = tiny_model(vocab_size=30523, hidden_size=16, head_dim=4, layer_ffn=[32] * 3)
    small, report = prune_vocabulary(
        model, source, texts, tmp_path / "tok", pairs=pairs, eval_texts=["xylozebra"]
    )
    old, new = load_tokenizer(source), load_tokenizer(tmp_path / "tok")
    assert "xylozebra" in new.convert_ids_to_tokens(new(texts[1], pairs[1])["input_ids"])
    _, before = encoded_logits(model, old, texts, pairs, 32)
    _, after = encoded_logits(small, new, texts, pairs, 32)
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    assert report.changed_on_eval == 0.0 and report.unk_rate_on_eval == 0.0


def test_keep_general_keeps_common_words_the_train_rows_never_use(
    tmp_path, minilm_tokenizer_folder
):
    """Out of domain, a common word the train rows lack still reads as itself."""
    from transformers import AutoTokenizer

    model = tiny_model(vocab_size=30522, hidden_size=16, head_dim=4, layer_ffn=[32] * 3)
    old_tok = AutoTokenizer.from_pretrained(minilm_tokenizer_folder, local_files_only=True)
    word = "battery"  # a whole-word token of the vocabulary that TEXTS never use
    assert len(old_tok.tokenize(word)) == 1
    assert old_tok.convert_tokens_to_ids(word) not in {
        i for t in TEXTS for i in old_tok(t)["input_ids"]
    }
    narrow, only_train = prune_vocabulary(model, minilm_tokenizer_folder, TEXTS, tmp_path / "a")
    wide, general = prune_vocabulary(
        model, minilm_tokenizer_folder, TEXTS, tmp_path / "b", keep_general=8000
    )
    assert only_train.kept_general == 0 and "general text" not in only_train.sentence()
    assert general.kept == only_train.kept + general.kept_general
    assert general.kept_general > 7000 and "general text" in general.sentence()
    assert wide.config.vocab_size == general.kept > narrow.config.vocab_size
    a = AutoTokenizer.from_pretrained(tmp_path / "a", local_files_only=True)
    b = AutoTokenizer.from_pretrained(tmp_path / "b", local_files_only=True)
    assert a.tokenize(word) != [word]  # split into other pieces, or [UNK]
    assert b.tokenize(word) == [word]
    # The train rows still read the same tokens (what pruning promises either way).
    enc_old = old_tok(TEXTS, padding=True, return_tensors="pt")
    enc_new = b(TEXTS, padding=True, return_tensors="pt")
    assert torch.equal(general.id_map[enc_old["input_ids"]], enc_new["input_ids"])
    with pytest.raises(UserError, match="keep_general"):
        prune_vocabulary(model, minilm_tokenizer_folder, TEXTS, tmp_path / "c", keep_general=-1)


def test_common_token_ids_keep_spelling_pieces_and_frequent_words_whole(
    minilm_tokenizer_folder,
):
    from wordfreq import top_n_list

    from slimpajama_gui.core.model.tokenizers import common_token_ids, load_tokenizer

    tok = load_tokenizer(minilm_tokenizer_folder)
    ids = common_token_ids(tok, 20_000)
    tokens = set(tok.convert_ids_to_tokens(ids))
    assert len(ids) == 20_000 and ids == sorted(ids)
    assert not any(t.startswith("[") and len(t) > 1 for t in tokens)  # [PAD], [unused5]
    # Every single character and "##" + character stays, so nothing becomes [UNK].
    assert {"a", "!", "##a", "##z", "7"} <= tokens
    # Review words beyond id 20,000 in BERT's list are kept; numbers too.
    assert {"sturdy", "creamy", "roasted", "2010", "the"} <= tokens
    # The most frequent English words read exactly as before with only these ids (the
    # first 19,117 on this vocabulary; 15,000 leaves room for another wordfreq release).
    kept = set(ids) | set(tok.all_special_ids)  # "😂" is [UNK] before and after
    words = [w for w in top_n_list("en", 15_000) if not any(c.isdigit() for c in w)]
    split = [w for w in words if not set(tok(w, add_special_tokens=False)["input_ids"]) <= kept]
    assert split == []
    assert common_token_ids(tok, 0) == []
    assert len(common_token_ids(tok, 10**6)) == len(tok) - sum(
        1 for t in tok.get_vocab() if t.startswith("[") and t.endswith("]")
    )
    with pytest.raises(ValueError):
        common_token_ids(tok, -1)


def test_common_token_ids_tokenize_each_word_once_across_counts(minilm_tokenizer_folder):
    """The wizard counts again at every keep_general a user types; words already
    tokenized are not tokenized again, and a count past the vocabulary tokenizes none."""
    from slimpajama_gui.core.model.tokenizers import common_token_ids, load_tokenizer

    class Counting:
        def __init__(self, tok) -> None:
            self.tok, self.words = tok, 0

        def get_vocab(self):
            return self.tok.get_vocab()

        def __call__(self, words, **kwargs):
            self.words += len(words)
            return self.tok(words, **kwargs)

    tok = Counting(load_tokenizer(minilm_tokenizer_folder))
    everything = common_token_ids(tok, 10**6)  # more than there are: all, none tokenized
    assert len(everything) > 29_000 and tok.words == 0
    first = common_token_ids(tok, 20_000)
    read = tok.words
    assert 0 < read < 100_000  # the most frequent words only, not the whole list
    assert set(common_token_ids(tok, 5_000)) <= set(first)
    assert common_token_ids(tok, 20_000) == first and tok.words == read


def test_keep_general_beyond_the_vocabulary_says_the_step_removed_only_placeholders(
    tmp_path, minilm_tokenizer_folder
):
    """A keep_general at least the tokenizer's text ids keeps them all: the report says
    so, and what to change, instead of reading like a pruning that worked."""
    model = tiny_model(vocab_size=30522, hidden_size=16, head_dim=4, layer_ffn=[32] * 3)
    small, report = prune_vocabulary(
        model, minilm_tokenizer_folder, TEXTS, tmp_path / "all", keep_general=50_000
    )
    assert report.all_text_ids is not None and report.kept >= report.all_text_ids
    assert 0 < report.original - report.kept < 1500  # only [unusedN] and the like went
    text = report.sentence()
    assert f"all {report.all_text_ids:,} ids this tokenizer has for text" in text
    assert "lower prune.keep_general" in text
    _, usual = prune_vocabulary(
        model, minilm_tokenizer_folder, TEXTS, tmp_path / "some", keep_general=8000
    )
    assert usual.all_text_ids is None and "placeholder" not in usual.sentence()
