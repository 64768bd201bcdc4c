"""Every BERT / RoBERTa config.json transformers loads: same logits here, or refused by feature.

Each case builds a tiny model with transformers, saves it with safetensors and a
tokenizer (editing config.json where the case says so), and opens the folder through
the app's own loader. The right value is transformers' logits (within 1e-5); a
refusal must be one sentence naming the config.json key, never advice that does not
apply ("copy the folder again"). docs/config-support.md is the table of keys.

transformers 5 removed ``prune_heads``; :func:`prune_heads` below does what
transformers 4.x's ``PreTrainedModel.prune_heads`` did (the same
``prune_linear_layer`` calls on query/key/value rows and output columns, the remaining
heads kept in order, ``config.pruned_heads`` in original head numbers), which is how
every ``pruned_heads`` checkpoint in circulation was made.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from transformers.activations import ACT2FN

from slimpajama_gui import cli
from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.config import ACTIVATIONS
from slimpajama_gui.core.model.encoder import EncoderClassifier
from slimpajama_gui.core.model.hf_config import ACTIVATION_NAMES, DEFAULTS
from slimpajama_gui.core.model.inspection import inspect_model
from slimpajama_gui.core.runtime.loading import open_model
from tests.conftest import TINY_VOCAB

LABELS = {0: "negative", 1: "neutral", 2: "positive"}
DELETE = object()  # an `edit` value that removes the key from config.json


def hf_config(family: str, **overrides):
    from transformers import BertConfig, RobertaConfig

    base = dict(
        vocab_size=len(TINY_VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=40,
        id2label=dict(LABELS),
        label2id={v: k for k, v in LABELS.items()},
    )
    if family == "roberta":
        base.update(max_position_embeddings=42, type_vocab_size=1, pad_token_id=1)
    base.update(overrides)
    return (BertConfig if family == "bert" else RobertaConfig)(**base)


def prune_heads(model, heads_to_prune: dict[int, list[int]]) -> None:
    """Remove attention heads in place, exactly as transformers 4.x's ``prune_heads``."""
    from transformers.pytorch_utils import prune_linear_layer

    config = model.config
    n = config.num_attention_heads
    d = config.hidden_size // n
    pruned = {int(k): set(v) for k, v in (getattr(config, "pruned_heads", None) or {}).items()}
    for layer, heads in heads_to_prune.items():
        attention = model.base_model.encoder.layer[layer].attention
        gone = pruned.get(layer, set()) | set(heads)
        keep = [h for h in range(n) if h not in gone]
        index = torch.tensor([i for h in keep for i in range(h * d, (h + 1) * d)], dtype=torch.long)
        for name in ("query", "key", "value"):
            setattr(attention.self, name, prune_linear_layer(getattr(attention.self, name), index))
        attention.output.dense = prune_linear_layer(attention.output.dense, index, dim=1)
        pruned[layer] = gone
    config.pruned_heads = {layer: sorted(heads) for layer, heads in pruned.items()}


def write_tokenizer(folder: Path, family: str) -> None:
    from transformers import BertTokenizerFast, PreTrainedTokenizerFast

    if family == "bert":
        vocab = folder / "vocab.txt"
        vocab.write_text("\n".join(TINY_VOCAB) + "\n", encoding="utf-8")
        BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True).save_pretrained(folder)
        return
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    # RoBERTa's special tokens at RoBERTa's ids (<s> 0, <pad> 1, </s> 2, <unk> 3).
    words = ["<s>", "<pad>", "</s>", "<unk>"] + TINY_VOCAB[5:]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        unk_token="<unk>", cls_token="<s>", sep_token="</s>",
    ).save_pretrained(folder)  # fmt: skip


def build(
    folder: Path,
    family: str = "bert",
    *,
    config: dict | None = None,
    prune: dict[int, list[int]] | None = None,
    edit: dict | None = None,
    dtype: torch.dtype | None = None,
):
    """Save a random transformers classifier (non-trivial everywhere) into ``folder``.

    Returns:
        The transformers model as saved (float32, eval mode).
    """
    from transformers import BertForSequenceClassification, RobertaForSequenceClassification

    cls = BertForSequenceClassification if family == "bert" else RobertaForSequenceClassification
    torch.manual_seed(0)
    model = cls(hf_config(family, **(config or {}))).eval()
    with torch.no_grad():  # LayerNorms and biases away from 1 / 0, so a misplaced tensor shows
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    if prune:
        prune_heads(model, prune)
    saved = copy.deepcopy(model).to(dtype) if dtype is not None else model
    saved.save_pretrained(folder)
    write_tokenizer(folder, family)
    if edit:
        path = folder / "config.json"
        raw = json.loads(path.read_text())
        for key, value in edit.items():
            if value is DELETE:
                raw.pop(key, None)
            else:
                raw[key] = value
        path.write_text(json.dumps(raw))
    return model


def inputs(family: str = "bert", pad: int | None = None, segments: int = 2):
    """(input_ids, attention_mask, token_type_ids): 3 rows of 9, rows 2-3 padded right.

    BERT inputs have a second segment (token type 1) when ``segments`` allows it.
    """
    pad = (0 if family == "bert" else 1) if pad is None else pad
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(6, len(TINY_VOCAB) - 1, (3, 9), generator=g)
    ids[ids == pad] = pad + 1 if pad + 1 < len(TINY_VOCAB) else 6
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    ids = ids.masked_fill(mask == 0, pad)
    types = torch.zeros_like(ids)
    if family == "bert" and segments > 1:
        types[:, 5:] = 1
    return ids, mask, types


def logits_of(model, family: str, pad: int | None = None, segments: int = 2) -> torch.Tensor:
    ids, mask, types = inputs(family, pad, segments)
    with torch.no_grad():
        if isinstance(model, EncoderClassifier):
            return model(ids, mask, types).logits
        out = model(input_ids=ids, attention_mask=mask, token_type_ids=types, return_dict=True)
        return out.logits.float()


def transformers_logits(
    folder: Path, family: str, pad: int | None = None, segments: int = 2
) -> torch.Tensor:
    """What transformers itself computes from the folder (in float32)."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        folder, dtype=torch.float32, local_files_only=True
    ).eval()
    return logits_of(model, family, pad, segments)


def assert_refused_by_feature(error: UserError, key: str) -> None:
    message = str(error)
    assert key in message, message
    assert any(w in message for w in ("not supported", "unsupported", "must")), message
    assert "copy the folder again" not in message, message
    assert "different models" not in message, message


# --------------------------------------------------------------------------- the example


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_pruned_heads_folder_loads_with_transformers_logits(family, tmp_path, capsys):
    folder = tmp_path / f"pruned-{family}"
    ref = build(folder, family, prune={0: [1, 3], 1: [0]})
    raw = json.loads((folder / "config.json").read_text())
    assert raw["pruned_heads"] == {"0": [1, 3], "1": [0]}
    expected = logits_of(ref, family)

    handle = open_model(folder)
    assert handle.info.layer_heads == (2, 3)
    assert handle.info.heads == 3
    ours = handle.load_model()
    assert ours.config.layer_heads == [2, 3] and ours.load_report.new_keys == []
    torch.testing.assert_close(logits_of(ours, family), expected, atol=1e-5, rtol=0)

    assert cli.main(["info", str(folder)]) == 0
    heads_line = next(line for line in capsys.readouterr().out.splitlines() if "Heads" in line)
    assert heads_line.split()[-1] == "2/3"

    # Our own format keeps the pruned shape; the transformers export reloads in
    # transformers (which has no pruned_heads any more) with the same logits.
    saved = EncoderClassifier.from_pretrained(ours.save_pretrained(tmp_path / "ours"))
    assert saved.config.layer_heads == [2, 3]
    torch.testing.assert_close(logits_of(saved, family), expected, atol=1e-5, rtol=0)
    exported = ours.export_transformers(tmp_path / "hf", tokenizer_from=folder)
    torch.testing.assert_close(transformers_logits(exported, family), expected, atol=1e-5, rtol=0)


def test_predict_on_a_pruned_folder_gives_transformers_label(tmp_path, capsys):
    from transformers import AutoTokenizer

    folder = tmp_path / "pruned"
    ref = build(folder, prune={0: [1, 3]})
    texts = ["the movie was good", "a very boring plot but great actor"]
    tok = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        probs = ref(**tok(texts, padding=True, return_tensors="pt")).logits.softmax(-1)
    assert cli.main(["predict", str(folder), *texts]) == 0
    lines = capsys.readouterr().out.splitlines()
    for line, row in zip(lines, probs, strict=True):
        label, shown = line.split("\t")[:2]
        assert label == LABELS[int(row.argmax())]
        for name, p in zip(LABELS.values(), row.tolist(), strict=True):
            assert f"{name} {p:.3f}" in shown


def test_a_layer_with_every_head_pruned_keeps_only_its_output_bias(tmp_path):
    folder = tmp_path / "m"
    build(folder, prune={0: [0, 1, 2, 3], 1: [2]})
    assert inspect_model(folder).layer_heads == (0, 3)
    ours = EncoderClassifier.from_pretrained(folder)
    # transformers cannot run a layer without heads; the unpruned model whose removed
    # heads have zero output columns computes the same function.
    ref = build(tmp_path / "unpruned")
    with torch.no_grad():
        for layer, heads in ((0, [0, 1, 2, 3]), (1, [2])):
            dense = ref.bert.encoder.layer[layer].attention.output.dense.weight
            for h in heads:
                dense[:, h * 8 : (h + 1) * 8] = 0
    torch.testing.assert_close(logits_of(ours, "bert"), logits_of(ref, "bert"), atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- every key

#: (id, family, build arguments, inputs() options). Same logits as transformers.
SAME = [
    ("pruned_heads", "bert", dict(prune={0: [1, 3], 1: [0]}), {}),
    ("pruned_heads-twice", "bert", dict(prune={1: [3], 0: [2]}), {}),
    ("pruned_heads-roberta", "roberta", dict(prune={0: [0], 1: [1, 2, 3]}), {}),
    ("layer_norm_eps", "bert", dict(config={"layer_norm_eps": 0.5}), {}),
    ("chunk_size_feed_forward", "bert", dict(config={"chunk_size_feed_forward": 3}), {}),
    ("fewer-num_hidden_layers", "bert", dict(config={"num_hidden_layers": 3},
                                             edit={"num_hidden_layers": 2}), {}),
    ("dtype-float16", "bert", dict(dtype=torch.float16), {}),
    ("dtype-bfloat16", "roberta", dict(dtype=torch.bfloat16), {}),
    ("torch_dtype", "bert", dict(edit={"dtype": DELETE, "torch_dtype": "float16"},
                                  dtype=torch.float16), {}),
    ("type_vocab_size-3", "bert", dict(config={"type_vocab_size": 3}), {}),
    ("type_vocab_size-1", "bert", dict(config={"type_vocab_size": 1}), {"segments": 1}),
    ("pad_token_id-bert", "bert", dict(config={"pad_token_id": 5}), {"pad": 5}),
    ("pad_token_id-roberta", "roberta", dict(config={"pad_token_id": 5}), {"pad": 5}),
    ("pad_token_id-null-bert", "bert", dict(edit={"pad_token_id": None}), {}),
    ("defaults", "bert", dict(config={"max_position_embeddings": 512},
                              edit={k: DELETE for k in ("max_position_embeddings",
                                    "type_vocab_size", "layer_norm_eps", "hidden_act",
                                    "pad_token_id", "classifier_dropout",
                                    "hidden_dropout_prob")}), {}),
    ("problem_type-single_label", "bert",
     dict(config={"problem_type": "single_label_classification"}), {}),
    ("num_labels-without-id2label", "bert",
     dict(edit={"id2label": DELETE, "label2id": DELETE, "num_labels": 3}), {}),
    ("no-labels-at-all", "bert",
     dict(config={"id2label": {0: "a", 1: "b"}, "label2id": {"a": 0, "b": 1}},
          edit={"id2label": DELETE, "label2id": DELETE}), {}),
    ("position_embedding_type-absolute", "bert",
     dict(edit={"position_embedding_type": "absolute"}), {}),
    ("per_layer_config-empty", "bert", dict(edit={"per_layer_config": {}}), {}),
    ("architectures-BertForMaskedLM-with-classifier", "bert",
     dict(edit={"architectures": ["BertForSequenceClassification", "BertForMaskedLM"]}), {}),
    ("ignored-keys", "bert", dict(edit={
        "use_cache": False, "tie_word_embeddings": False, "output_attentions": True,
        "output_hidden_states": True, "return_dict": False, "torchscript": True,
        "is_encoder_decoder": True, "initializer_range": 0.5, "bos_token_id": 7,
        "eos_token_id": 8, "sep_token_id": 3, "embedding_size": 16, "label2id": {"x": 9},
        "attn_implementation": "eager", "classifier_dropout": 0.3, "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.5, "gradient_checkpointing": True,
        "finetuning_task": "sst2", "tokenizer_class": "BertTokenizer", "max_length": 20,
        "transformers_version": "4.0.0", "_name_or_path": "somewhere", "an_unknown_key": 1,
    }), {}),
    ("attn_implementation-sdpa-roberta", "roberta",
     dict(edit={"attn_implementation": "sdpa"}), {}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("family", "arguments", "options"), [c[1:] for c in SAME], ids=[c[0] for c in SAME]
)
def test_every_config_transformers_loads_loads_here_or_is_refused_by_feature(
    family, arguments, options, tmp_path
):
    folder = tmp_path / "m"
    saved = build(folder, family, **arguments)
    if "prune" in arguments:
        # transformers 5 has no pruned_heads: the model it saved is the reference.
        expected = logits_of(saved, family, **options)
    else:
        expected = transformers_logits(folder, family, **options)
    ours = open_model(folder).load_model()
    assert ours.load_report.new_keys == []
    torch.testing.assert_close(logits_of(ours, family, **options), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("act", sorted(ACT2FN))
def test_every_hidden_act_transformers_knows_gives_its_logits_or_is_refused(act, tmp_path):
    folder = tmp_path / "m"
    build(folder, "bert", config={"hidden_act": act})
    if act not in ACTIVATION_NAMES:
        with pytest.raises(UserError) as err:
            open_model(folder)
        assert_refused_by_feature(err.value, f"hidden_act {act!r}")
        return
    ours = open_model(folder).load_model()
    torch.testing.assert_close(
        logits_of(ours, "bert"), transformers_logits(folder, "bert"), atol=1e-5, rtol=0
    )


#: (id, family, build arguments, the key the refusal must name, refused by the model
#: browser too (a config-level refusal) rather than only when the head is used).
REFUSED = [
    ("position_embedding_type-relative_key", "bert",
     dict(edit={"position_embedding_type": "relative_key"}), "position_embedding_type", True),
    ("position_embedding_type-relative_key_query", "roberta",
     dict(edit={"position_embedding_type": "relative_key_query"}), "position_embedding_type",
     True),
    ("is_decoder", "bert", dict(edit={"is_decoder": True}), "is_decoder", True),
    ("add_cross_attention", "bert", dict(edit={"add_cross_attention": True}),
     "add_cross_attention", True),
    ("per_layer_config", "bert",
     dict(edit={"per_layer_config": {"0": {"num_attention_heads": 2}}}), "per_layer_config",
     True),
    ("quantization_config", "bert",
     dict(edit={"quantization_config": {"quant_method": "bitsandbytes", "load_in_8bit": True}}),
     "quantization_config (bitsandbytes)", True),
    ("type_vocab_size-0", "bert", dict(edit={"type_vocab_size": 0}), "type_vocab_size 0", True),
    ("hidden_dropout_prob-1", "bert", dict(edit={"hidden_dropout_prob": 1.0}),
     "hidden_dropout_prob 1.0", True),
    ("pad_token_id-null-roberta", "roberta", dict(edit={"pad_token_id": None}),
     "pad_token_id is null", True),
    ("pruned_heads-head-out-of-range", "bert", dict(edit={"pruned_heads": {"0": [4]}}),
     "pruned_heads", True),
    ("pruned_heads-layer-out-of-range", "bert", dict(edit={"pruned_heads": {"2": [0]}}),
     "pruned_heads names layer 2", True),
    ("num_labels-vs-id2label", "bert", dict(edit={"num_labels": 2}), "num_labels is 2", True),
    ("id2label-gap", "bert", dict(edit={"id2label": {"0": "a", "1": "b", "5": "c"}}),
     "id2label", True),
    ("architectures-custom", "bert", dict(edit={"architectures": ["BertWithMyHead"]}),
     "BertWithMyHead", True),
    ("problem_type-regression", "bert", dict(config={"problem_type": "regression"}),
     "problem_type 'regression'", False),
    ("problem_type-multi_label", "roberta",
     dict(config={"problem_type": "multi_label_classification"}),
     "problem_type 'multi_label_classification'", False),
    ("num_labels-1", "bert", dict(config={"id2label": {0: "score"}, "label2id": {"score": 0}}),
     "num_labels 1", False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("family", "arguments", "key", "in_browser"),
    [c[1:] for c in REFUSED],
    ids=[c[0] for c in REFUSED],
)
def test_every_config_transformers_loads_or_refuses_is_refused_here_by_feature(
    family, arguments, key, in_browser, tmp_path
):
    folder = tmp_path / "m"
    build(folder, family, **arguments)
    with pytest.raises(UserError) as loaded:
        EncoderClassifier.from_pretrained(folder)
    assert_refused_by_feature(loaded.value, key)
    if in_browser:  # `slimpajama info` and the model browser refuse it as well
        with pytest.raises(UserError) as browsed:
            inspect_model(folder)
        assert_refused_by_feature(browsed.value, key.split()[0])
    else:  # only the head is refused: the encoder under new labels is fine
        assert inspect_model(folder).num_labels is not None
        assert EncoderClassifier.from_pretrained(folder, num_labels=4).load_report.new_keys


def test_a_genuine_mismatch_still_names_the_keys_and_says_different_models(tmp_path):
    folder = tmp_path / "m"
    build(folder, edit={"intermediate_size": 40})
    with pytest.raises(UserError) as err:
        EncoderClassifier.from_pretrained(folder)
    message = str(err.value)
    assert "layers.0.ffn.intermediate.weight (file (48, 32), config (40, 32)) set by " in message
    assert "intermediate_size" in message
    assert "describe different models" in message


def test_defaults_and_activation_lists_match_transformers():
    from transformers import BertConfig, RobertaConfig

    for family, cls in (("bert", BertConfig), ("roberta", RobertaConfig)):
        reference = cls()
        for key, value in DEFAULTS[family].items():
            assert getattr(reference, key) == value, (family, key)
    assert set(ACTIVATIONS) == set(ACTIVATION_NAMES)


def test_more_num_hidden_layers_than_the_weights_hold_is_named(tmp_path):
    folder = tmp_path / "m"
    build(folder, edit={"num_hidden_layers": 3})
    with pytest.raises(UserError) as err:
        EncoderClassifier.from_pretrained(folder)
    message = str(err.value)
    assert "hold 2 layers but config.json's num_hidden_layers gives 3" in message
    assert "set num_hidden_layers to match the weights" in message
