"""Inputs a model cannot represent: fitted as transformers fits them, or refused up front.

Each case builds a tiny Hugging Face model whose embeddings or head cannot take what
its tokenizer or data give (segment ids, positions, token ids, labels), opens it through
the project's loader and drives every entry point: a job (finetune, evaluate,
benchmark), ``slimpajama eval`` and ``predict``, the Playground's predictor and the
ONNX runner. Where transformers gives a meaningful result our logits must equal its
own; where it does not, one sentence names the field and what to do, and no job output
is written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from slimpajama_gui import cli
from slimpajama_gui.core import data as data_mod
from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.jobs.pipeline import PipelineCallbacks, run
from slimpajama_gui.core.model.tokenizers import load_tokenizer
from slimpajama_gui.core.plan.recipe import recipe_from_yaml
from slimpajama_gui.core.runtime.evaluate import predict
from slimpajama_gui.core.runtime.inputs import model_inputs
from slimpajama_gui.core.runtime.loading import open_model

WORDS = (
    "the a an is was it this that movie film story plot good great bad awful boring fun "
    "not very and but"
).split()
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# A BERT-style vocabulary laid out for RoBERTa (as klue/roberta-base): pad at id 1.
ROBERTA_BERT_SPECIALS = ["[CLS]", "[PAD]", "[SEP]", "[UNK]", "[MASK]"]
POSITIONS = 34  # position table rows; a RoBERTa model reads 32 tokens of it (offset 2)
#: Wide initial weights, so logits differ clearly between inputs (at BERT's 0.02 every
#: row scores within 1e-4 of the others and a 1e-5 comparison would say little).
INIT = 0.5
LONG = " ".join(["the good movie was very fun"] * 60)  # ~360 words: > 1,200 characters


def bert_tokenizer(folder: Path, specials: list[str], extra: int = 0):
    from transformers import BertTokenizerFast

    tokens = [*specials, *WORDS, *[f"extra{i}" for i in range(extra)]]
    tok = BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)})
    tok.save_pretrained(folder)
    return len(tokens)


def roberta_tokenizer(folder: Path) -> int:
    """A byte-level BPE tokenizer as RoBERTa's (no token_type_ids, model_max_length 1e30)."""
    from transformers import RobertaTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
    for ch in bytes_to_unicode().values():
        vocab.setdefault(ch, len(vocab))
    merges = []
    for word in WORDS:
        for piece in ("Ġ" + word, word):
            current = piece[0]
            for ch in piece[1:]:
                if current + ch not in vocab:
                    merges.append((current, ch))
                    vocab[current + ch] = len(vocab)
                current += ch
    RobertaTokenizerFast(vocab=vocab, merges=merges).save_pretrained(folder)
    return len(vocab)


def roberta(folder: Path, tokenizer: str = "roberta", **config) -> Path:
    from transformers import RobertaConfig, RobertaForSequenceClassification

    folder.mkdir(parents=True)
    if tokenizer == "roberta":
        size = roberta_tokenizer(folder)
    else:
        size = bert_tokenizer(folder, ROBERTA_BERT_SPECIALS)
    torch.manual_seed(0)
    base = dict(
        vocab_size=size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=POSITIONS, type_vocab_size=1,
        pad_token_id=1, num_labels=2, initializer_range=INIT,
    )  # fmt: skip
    cfg = RobertaConfig(**{**base, **config})
    RobertaForSequenceClassification(cfg).eval().save_pretrained(folder)
    return folder


def bert(folder: Path, *, vocab_size: int | None = None, extra: int = 0, **config) -> Path:
    from transformers import BertConfig, BertForSequenceClassification

    folder.mkdir(parents=True)
    size = bert_tokenizer(folder, BERT_SPECIALS, extra)
    torch.manual_seed(0)
    base = dict(
        vocab_size=vocab_size or size, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64, max_position_embeddings=POSITIONS,
        initializer_range=INIT,
    )  # fmt: skip
    BertForSequenceClassification(BertConfig(**{**base, **config})).eval().save_pretrained(folder)
    return folder


def write_data(path: Path, *, pairs: bool, long: bool, classes: int = 2) -> Path:
    """A small TSV; with ``long`` every other first text is far longer than the model reads."""
    rows = ["sentence\tsentence2\tlabel" if pairs else "sentence\tlabel"]
    for i in range(24):
        text = LONG if long and i % 2 else f"the {WORDS[8 + i % 8]} was {WORDS[12 + i % 6]}"
        second = f"a {WORDS[12 + i % 8]} film"
        rows.append("\t".join([text, second] if pairs else [text]) + f"\t{i % classes}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@dataclass
class Case:
    build: Callable[[Path], Path]
    pairs: bool = False
    long: bool = False
    classes: int = 2
    steps: str = "finetune"
    #: None: handled (transformers' logits are the reference); else words the refusal
    #: must contain: the field and what to do.
    refusal: list[str] | None = None
    #: the reference is transformers without token_type_ids (RoBERTa reads segment 0)
    reference_drops_types: bool = False
    #: refused as soon as the model is opened (every entry point), not only with data
    refused_on_open: bool = False
    #: the CLI and the Playground are refused too (the head itself is the problem)
    refused_for_predict: bool = False


CASES = {
    # The user's report: a RoBERTa classifier with one segment row, given sentence pairs.
    "roberta-type_vocab_size-1-roberta-tokenizer-pairs": Case(
        lambda d: roberta(d), pairs=True, reference_drops_types=True
    ),
    "roberta-type_vocab_size-1-bert-tokenizer-pairs": Case(
        lambda d: roberta(d, tokenizer="bert"), pairs=True, reference_drops_types=True
    ),
    "bert-type_vocab_size-1-pairs": Case(
        lambda d: bert(d, type_vocab_size=1),
        pairs=True,
        refusal=["type_vocab_size 1", "segment id 1", "text_pair_column"],
    ),
    "bert-type_vocab_size-0": Case(
        lambda d: bert(d, type_vocab_size=0),
        refusal=["type_vocab_size 0 is not supported", "look up token type 0"],
        refused_on_open=True,
    ),
    "roberta-longer-than-positions-pairs-tokenizer-max-1e30": Case(
        lambda d: roberta(d), pairs=True, long=True, reference_drops_types=True
    ),
    "bert-longer-than-positions-pairs": Case(lambda d: bert(d), pairs=True, long=True),
    "bert-longer-than-positions": Case(lambda d: bert(d), long=True),
    "roberta-positions-fewer-than-a-pairs-special-tokens": Case(
        lambda d: roberta(d, max_position_embeddings=5),  # 3 tokens; a pair needs 4 specials
        pairs=True,
        refusal=["reads at most 3 tokens", "special tokens", "max_position_embeddings"],
    ),
    "tokenizer-bigger-than-embedding": Case(
        lambda d: bert(d, vocab_size=20, extra=4),
        refusal=[
            f"{len(BERT_SPECIALS) + len(WORDS) + 4} tokens",
            "vocab_size 20",
            "resize_token_embeddings",
        ],
        refused_for_predict=True,
    ),
    "multi-label-head-given-single-labels": Case(
        lambda d: bert(d, problem_type="multi_label_classification"),
        refusal=["problem_type 'multi_label_classification'", "single-label classifiers"],
        refused_for_predict=True,
    ),
    "regression-head-given-single-labels": Case(
        lambda d: bert(d, num_labels=1),
        classes=1,
        refusal=["num_labels 1 is a regression model", "2 or more classes"],
        refused_for_predict=True,
    ),
    "labels-outside-a-trained-head-evaluated-untrained": Case(
        lambda d: bert(d),
        classes=3,
        steps="evaluate",
        refusal=["trained for 2 labels", "3 ('0', '1', '2')", "finetune step first"],
    ),
}

STEPS = {
    "finetune": """
  - {type: finetune, epochs: 1, batch_size: 8, eval_batch_size: 8}
  - {type: evaluate}
  - {type: benchmark, sentences: 4, repeats: 1, warmup: 1}
""",
    "evaluate": """
  - {type: benchmark, sentences: 4, repeats: 1, warmup: 1}
  - {type: evaluate}
""",
}


class Messages(PipelineCallbacks):
    def __init__(self) -> None:
        self.messages: list[str] = []

    def on_message(self, text: str) -> None:
        self.messages.append(text)


def run_job(model: Path, data: Path, case: Case, output: Path):
    pair = "\n  text_pair_column: sentence2" if case.pairs else ""
    recipe = recipe_from_yaml(
        f"""
name: inputs
model: {model}
output: {output}
dataset:
  train: {data}
  eval: {data}{pair}
  max_length: 128
steps:{STEPS[case.steps]}""",
        source="inputs.yaml",
        base_dir=output.parent,
    )
    messages = Messages()
    return run(recipe, messages), messages.messages


def transformers_logits(
    folder: Path, texts: list[str], pairs: list[str] | None, limit: int, case: Case
) -> np.ndarray:
    """transformers' own logits on the same (pair) input, truncated to the model's limit."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    ref = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True).eval()
    enc = tok(texts, pairs, truncation=True, max_length=limit, padding=True, return_tensors="pt")
    if case.reference_drops_types:
        # What RoBERTa's tokenizer gives (no token_type_ids), so transformers uses zeros.
        enc.pop("token_type_ids", None)
    with torch.no_grad():
        return ref(**enc).logits.numpy()


def reference_logits(folder: Path, data: Path, case: Case, limit: int) -> np.ndarray:
    split = data_mod.load_dataset(data_mod.DatasetSpec(
        train=str(data), eval=str(data), text_pair_column="sentence2" if case.pairs else None,
    )).eval  # fmt: skip
    return transformers_logits(folder, split.texts, split.pairs, limit, case)


def our_logits(model, folder: Path, data: Path, case: Case) -> np.ndarray:
    split = data_mod.load_dataset(data_mod.DatasetSpec(
        train=str(data), eval=str(data), text_pair_column="sentence2" if case.pairs else None,
    )).eval  # fmt: skip
    tok = load_tokenizer(folder)
    enc = model_inputs(model, tok, folder.name).encode_split(split, tok, 128)
    batches = data_mod.batches(enc, split.labels, 5, False, 0, tok.pad_token_id or 0)
    return predict(model, batches).logits


@pytest.mark.parametrize("name", list(CASES))
def test_inputs_a_model_cannot_represent_are_refused_or_handled_as_transformers_does(
    name, tmp_path, capsys
):
    case = CASES[name]
    folder = case.build(tmp_path / name)
    data = write_data(tmp_path / "data.tsv", pairs=case.pairs, long=case.long, classes=case.classes)
    output = tmp_path / "out"

    result, messages = run_job(folder, data, case, output)

    if case.refusal is None:
        assert result.status == "done", result.error
        model = open_model(folder).load_model()
        limit = model.config.max_position_embeddings - model.config.position_offset
        if case.long:
            truncated = [m for m in messages if "truncated" in m]
            assert f"dataset.max_length is 128 tokens but {name} reads at most {limit}" in (
                " ".join(messages)
            )
            assert any(f"longer than max_length={limit} tokens" in m for m in truncated)
        ours = our_logits(model, folder, data, case)
        theirs = reference_logits(folder, data, case, limit)
        np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)
        # The ONNX runner takes the same inputs (token_type_ids only if the graph has them).
        from slimpajama_gui.core.runtime import onnx_runner
        from slimpajama_gui.core.techniques import onnx_export

        onnx_export.export_onnx(model, tmp_path / "onnx" / onnx_export.ONNX_NAME)
        runner = onnx_runner.OrtRunner(
            tmp_path / "onnx" / onnx_export.ONNX_NAME, config=model.config
        )
        onnx = our_logits(onnx_runner.OnnxClassifier(runner), folder, data, case)
        np.testing.assert_allclose(onnx, theirs, atol=1e-4, rtol=0)
    else:
        assert result.status == "failed"
        assert "internal error" not in result.error
        for words in case.refusal:
            assert words in result.error, result.error
        assert not output.exists()  # refused before any step wrote a variant

    # Single-text paths: `slimpajama predict` and the Playground's predictor.
    from slimpajama_gui.core.runtime.predictor import ModelPredictor

    capsys.readouterr()
    code = cli.main(["predict", str(folder), LONG, "a good film"])
    out, err = capsys.readouterr()
    if case.refusal is not None and (case.refused_for_predict or case.refused_on_open):
        assert code == 1 and "internal error" not in err
        assert all(words in err for words in case.refusal), err
        with pytest.raises(UserError) as refused:
            ModelPredictor(folder)
        assert all(words in str(refused.value) for words in case.refusal)
    else:
        assert code == 0, err
        assert len(out.strip().splitlines()) == 2
        assert "was truncated" in err  # the long text, cut to what the model reads
        probs, labels, _ = ModelPredictor(folder).predict([LONG, "a good film"])
        config = open_model(folder).load_model().config
        limit = config.max_position_embeddings - config.position_offset
        theirs = transformers_logits(folder, [LONG, "a good film"], None, limit, case)
        np.testing.assert_allclose(probs, torch.softmax(torch.from_numpy(theirs), -1), atol=1e-5)


def test_slimpajama_eval_refuses_heads_that_are_not_single_label(tmp_path, capsys):
    data = write_data(tmp_path / "data.tsv", pairs=False, long=True)
    for name, kwargs, words in [
        ("multi", {"problem_type": "multi_label_classification"}, "multi_label_classification"),
        ("regression", {"num_labels": 1}, "num_labels 1"),
    ]:
        folder = bert(tmp_path / name, **kwargs)
        assert cli.main(["eval", str(folder), str(data), "--label-ids"]) == 1
        assert words in capsys.readouterr().err
    # A single-label head evaluates long texts, truncated to its 34 positions.
    folder = bert(tmp_path / "ok")
    assert cli.main(["eval", str(folder), str(data), "--label-ids"]) == 0
    out, err = capsys.readouterr()
    assert "--max-length is 128 tokens but ok reads at most 34" in err
    assert "12 texts were longer than max_length=34 tokens" in err
    assert "Accuracy" in out


def test_a_trained_head_with_other_labels_is_replaced_when_the_job_trains_first(tmp_path):
    folder = bert(tmp_path / "two-labels")
    data = write_data(tmp_path / "data.tsv", pairs=False, long=False, classes=3)
    result, messages = run_job(folder, data, Case(lambda d: d), tmp_path / "out")
    assert result.status == "done", result.error
    assert any("new 3-class classifier head" in m for m in messages)
    saved = json.loads((result.final / "config.json").read_text())
    assert saved["id2label"] == {"0": "0", "1": "1", "2": "2"}
