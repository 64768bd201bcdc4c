"""Recipes run end to end on a tiny model and the demo data: results, history, faults."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.jobs import context
from slimpajama_gui.core.jobs.handlers import quantize as quantize_handlers
from slimpajama_gui.core.jobs.pipeline import PipelineCallbacks, PipelineResult, run
from slimpajama_gui.core.plan.recipe import recipe_from_yaml
from slimpajama_gui.core.runtime.loading import open_model
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.core.storage.locks import OutputLock
from slimpajama_gui.core.techniques.hooks import Control
from slimpajama_gui.core.techniques.quantize import int8_path
from tests.figures import measured


def make_recipe(model: Path, output: Path, steps: str, dataset: str = "train: demo") -> object:
    text = f"""
name: test
model: {model}
dataset:
  {dataset}
  labels: [negative, positive]
  max_length: 48
output: {output}
steps:
{steps}
"""
    return recipe_from_yaml(text, source="test.yaml", base_dir=output.parent)


FINETUNE = """
  - type: finetune
    epochs: 6
    learning_rate: 3.0e-3
    batch_size: 16
    warmup_ratio: 0.1
    log_every_steps: 5
    seed: 1
"""


class Recorder(PipelineCallbacks):
    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.messages: list[str] = []

    def on_message(self, text):
        self.messages.append(text)

    def on_step_start(self, index, step, count):
        self.events.append(("start", index, step.step_type))

    def on_log(self, index, metrics):
        self.events.append(("log", index, metrics))

    def on_eval(self, index, metrics):
        self.events.append(("eval", index, metrics))

    def on_variant(self, index, path, record):
        self.events.append(("variant", index, path))

    def on_end(self, status, error):
        self.events.append(("end", status, error))


@pytest.fixture
def store(tmp_path):
    with JobStore(tmp_path / "history.sqlite3") as s:
        yield s


def test_demo_chain_trains_saves_and_measures(tiny_minilm, tmp_path, store):
    """Fine-tune → evaluate → benchmark: loss falls, accuracy beats chance, the result reloads."""
    out = tmp_path / "out"
    steps = (
        FINETUNE + "  - type: evaluate\n  - type: benchmark\n    sentences: 20\n    repeats: 2\n"
    )
    rec = Recorder()
    result = run(make_recipe(tiny_minilm, out, steps), rec, store=store)
    assert result.status == "done", result.error
    losses = [m["loss"] for kind, _, m in (e for e in rec.events if e[0] == "log") if "loss" in m]
    assert len(losses) >= 10 and np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3]), losses
    accuracy = result.summary[1]["accuracy"]
    assert accuracy >= 0.70, f"eval accuracy {accuracy} does not beat chance (0.5) clearly"

    variant = out / "01-finetune"
    assert result.variants == [variant]
    info = json.loads((variant / "slimpajama.json").read_text())
    assert info["metrics"]["eval"]["accuracy"] == pytest.approx(accuracy)
    assert measured(info["metrics"]["benchmark"]["latency_p50_ms"])
    assert info["parent"] == str(tiny_minilm) and info["label_names"] == ["negative", "positive"]
    assert info["recipe"]["steps"][0]["type"] == "finetune"
    assert "eval accuracy" in (variant / "README.md").read_text()
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "staging folders left behind"

    # The saved variant reloads and predicts what the job measured.
    handle = open_model(variant)
    assert handle.info.source == "result" and handle.info.num_labels == 2
    model, tok = handle.load_model(), handle.load_tokenizer()
    assert model.config.id2label == {0: "negative", 1: "positive"}
    enc = tok(["An absolute joy from start to finish."], return_tensors="pt")
    with torch.inference_mode():
        probs = torch.softmax(model(**enc).logits, -1)
    assert probs.shape == (1, 2) and torch.isfinite(probs).all()

    job = store.get_job(result.job_id)
    assert job.status == "done" and job.progress == pytest.approx(1.0)
    assert [a.path for a in store.variants(result.job_id)] == [str(variant)]
    keys = {m.key for m in store.metrics(result.job_id)}
    assert keys >= {"loss", "lr", "eval_accuracy", "latency_p50_ms"}


# A step per kind of unit that on_progress counts: training steps, evaluation batches and
# the distill step's teacher-cache batches.
CANCELLABLE = {
    "finetune": FINETUNE.replace("epochs: 6", "epochs: 500"),
    "evaluate": "  - {type: evaluate, batch_size: 2}\n",
    "distill": "  - {type: distill, student_layers: [1], epochs: 500, learning_rate: 1.0e-3, batch_size: 16}\n",
}


@pytest.mark.parametrize("step_type", sorted(CANCELLABLE))
def test_cancel_stops_at_the_next_unit_of_work_and_writes_nothing(
    tiny_minilm, tmp_path, store, step_type
):
    """Cancel is checked before every training step and every batch: once the request is
    in, no further unit starts, the job ends cancelled and the output folder stays empty."""
    out = tmp_path / "out"
    steps = CANCELLABLE[step_type]
    control = Control()
    done: list[int] = []
    after_request: list[int] = []

    class StopAfterTwo(PipelineCallbacks):
        def on_progress(self, index, n, total):
            (after_request if control.should_stop else done).append(n)
            if n == 2 and not control.should_stop:
                # As the GUI's Cancel button does: another thread sets the flag. Joined,
                # so the request is in before the loop goes on.
                stopper = threading.Thread(target=control.request_stop)
                stopper.start()
                stopper.join()

    result = run(make_recipe(tiny_minilm, out, steps), StopAfterTwo(), control, store=store)
    assert result.status == "cancelled", (result.status, result.error)
    assert result.error == f"cancelled during step 1 ({step_type})"
    assert done == [1, 2] and after_request == [], (done, after_request)
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())
    assert not list(tmp_path.glob(".slimpajama-job-*"))  # the scratch folder is gone too
    job = store.get_job(result.job_id)
    assert job.status == "cancelled" and store.variants(result.job_id) == []


def test_nan_loss_marks_the_job_failed_with_the_step(tiny_minilm, tmp_path, store, monkeypatch):
    real_train = context.train

    def nan_after_three(model, batches, steps, config, **kw):
        calls = {"n": 0}

        def loss_fn(m, batch):
            calls["n"] += 1
            logits = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loss = torch.nn.functional.cross_entropy(logits, batch["labels"])
            return (loss * float("nan") if calls["n"] >= 3 else loss), {
                "loss": float(loss.detach())
            }

        return real_train(model, batches, steps, config, **dict(kw, loss_fn=loss_fn))

    monkeypatch.setattr(context, "train", nan_after_three)
    out = tmp_path / "out"
    result = run(make_recipe(tiny_minilm, out, FINETUNE), store=store)
    assert result.status == "failed" and "step 3" in result.error and "not a finite" in result.error
    assert result.failed_step == "step 1 (finetune)"
    job = store.get_job(result.job_id)
    assert job.status == "failed" and "step 3" in job.error
    assert not out.exists() or not any(out.iterdir())


def test_second_job_on_the_same_output_is_refused(tiny_minilm, tmp_path, store):
    out = tmp_path / "out"
    with OutputLock(out, job_id=99):
        result = run(make_recipe(tiny_minilm, out, "  - type: evaluate\n"), store=store)
    assert result.status == "failed" and "already being written" in result.error


def test_output_inside_the_source_model_is_refused(tiny_minilm, store):
    with pytest.raises(UserError, match="source model"):
        run(make_recipe(tiny_minilm, tiny_minilm / "out", "  - type: evaluate\n"), store=store)


@pytest.mark.int8
def test_quantize_saves_an_int8_variant_that_reloads_quantized(tiny_minilm, tmp_path, store):
    out = tmp_path / "out"
    steps = (
        FINETUNE.replace("epochs: 6", "epochs: 3")
        + "  - {type: quantize, method: dynamic_int8, tolerance: 2.0}\n  - type: evaluate\n"
    )
    result = run(make_recipe(tiny_minilm, out, steps), store=store)
    assert result.status == "done", result.error
    fp32, int8 = result.variants
    info = json.loads((int8 / "slimpajama.json").read_text())
    assert info["weights_format"] == "dynamic_int8"
    q = info["quantization"]
    assert q["baseline_accuracy"] - info["metrics"]["training"]["eval_accuracy"] <= 0.02 + 1e-9
    # Its accuracy was measured with this CPU's int8 arithmetic, and it says which.
    assert q["int8_path"] == int8_path.current().to_dict()
    assert (int8 / "model.safetensors").stat().st_size < (
        fp32 / "model.safetensors"
    ).stat().st_size / 3
    handle = open_model(int8)
    assert (
        handle.info.dtype == "dynamic_int8"
        and handle.info.parameters == open_model(fp32).info.parameters
    )
    model = handle.load_model()
    assert model.quantization.method == "dynamic_int8"  # not silently reloaded as float
    assert result.summary[-1]["accuracy"] == pytest.approx(result.summary[-2]["accuracy"])


def test_bad_data_fails_before_training_with_the_file_named(tiny_minilm, tmp_path, store):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\ngood film,1\nbad film,7\n", encoding="utf-8")
    recipe = make_recipe(
        tiny_minilm, tmp_path / "out", FINETUNE,
        dataset=f"train: {bad}\n  eval: {bad}\n  text_column: text",
    )  # fmt: skip
    result = run(recipe, store=store)
    assert result.status == "failed" and "bad.csv" in result.error
    assert result.failed_step == "loading the model and data"
    assert not store.metrics(result.job_id)  # no training step was logged


def test_a_job_says_its_recipe_s_warnings_before_any_step(tiny_minilm, tmp_path, store):
    """A distillation with no weight on the teacher is allowed; the job says it first
    (here one that then fails on its data, so no step needs to run)."""
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\ngood film,1\nbad film,7\n", encoding="utf-8")
    recipe = make_recipe(
        tiny_minilm, tmp_path / "out",
        "  - {type: distill, student_layers: [0], alpha_kd: 0}\n",
        dataset=f"train: {bad}\n  eval: {bad}\n  text_column: text",
    )  # fmt: skip
    recorder = Recorder()
    result = run(recipe, recorder, store=store)
    assert result.status == "failed" and not recorder.events[:-1]
    assert recorder.messages[0].startswith(
        "warning: Step 1 'distill': the KD weight (alpha_kd), hidden MSE (hidden_mse) and attention MSE"
    )


def test_prune_distill_chain_shrinks_and_reloads(tiny_minilm, tmp_path, store):
    """Fine-tune, drop heads/FFN, distill to fewer layers, prune the vocabulary: each
    variant is smaller than its parent, is saved, and reloads with the same predictions."""
    out = tmp_path / "out"
    steps = (
        FINETUNE.replace("epochs: 6", "epochs: 3")
        + "  - {type: prune, method: heads, amount: 0.5, recovery_epochs: 0.5, learning_rate: 1.0e-3, batch_size: 16}\n"
        + "  - {type: prune, method: ffn, amount: 0.5, recovery_epochs: 0, batch_size: 16}\n"
        + "  - {type: distill, student_layers: [1], epochs: 1, learning_rate: 1.0e-3, batch_size: 16}\n"
        + "  - {type: prune, method: magnitude, amount: 0.5, recovery_epochs: 0.5, learning_rate: 1.0e-3, batch_size: 16}\n"
        + "  - {type: prune, method: vocabulary, keep_general: 0}\n"
        + "  - type: evaluate\n"
    )
    rec = Recorder()
    result = run(make_recipe(tiny_minilm, out, steps), rec, store=store)
    assert result.status == "done", result.error
    names = [p.name for p in result.variants]
    assert names == ["01-finetune", "02-prune", "03-prune", "04-distill", "05-prune", "06-prune"]
    parameters = [open_model(p).info.parameters for p in result.variants]
    assert parameters[1] < parameters[0] and parameters[2] < parameters[1]
    assert parameters[3] < parameters[2]
    assert (
        parameters[5] < parameters[4] / 2
    )  # the 30,522-row embedding keeps only ids seen in train
    heads = json.loads((out / "02-prune" / "config.json").read_text())["layer_heads"]
    assert heads == [2, 2]  # 4 heads per layer, half removed
    assert json.loads((out / "04-distill" / "config.json").read_text())["layer_heads"] == [2]
    sparsity = json.loads((out / "05-prune" / "slimpajama.json").read_text())["prune"]["sparsity"]
    assert 0.45 < sparsity["overall"] < 0.55
    # Sparsity per layer reached the charts as metrics.
    assert any(e[0] == "eval" and "sparsity/overall" in e[2] for e in rec.events)
    # Heads and FFN pruning report the share of each layer's weights they removed: half
    # of the attention weights, then half of the FFN weights on top.
    removed = [e[2] for e in rec.events if e[0] == "eval" and "sparsity/layer 0" in e[2]]
    heads_cut, ffn_cut = removed[0], removed[1]
    for layer in ("layer 0", "layer 1"):
        assert 0.1 < heads_cut[f"sparsity/{layer}"] < 0.5
        assert heads_cut[f"sparsity/{layer}"] < ffn_cut[f"sparsity/{layer}"] <= 0.5 + 1e-6
    # The vocabulary-pruned variant ships a tokenizer that agrees with its embedding.
    final = result.variants[-1]
    handle = open_model(final)
    model, tok = handle.load_model(), handle.load_tokenizer()
    assert len(tok) == model.config.vocab_size == handle.info.vocab
    enc = tok(["a great film", "zyxwvut qwerty"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        assert torch.isfinite(model(**enc).logits).all()
    # Its accuracy equals the evaluate step's (same data, same ids).
    assert result.summary[-1]["accuracy"] == pytest.approx(
        result.summary[-2]["accuracy"], abs=0.011
    )


@pytest.mark.int8
def test_onnx_int8_variant_is_measured_in_onnxruntime_and_reloads(tiny_minilm, tmp_path, store):
    out = tmp_path / "out"
    steps = (
        FINETUNE.replace("epochs: 6", "epochs: 3")
        + "  - {type: benchmark, sentences: 10, repeats: 1, backend: onnxruntime}\n"
        + "  - {type: quantize, method: dynamic_int8, backend: onnxruntime, tolerance: 3.0}\n"
        + "  - type: evaluate\n"
        + "  - {type: benchmark, sentences: 10, repeats: 1}\n"
        + "  - {type: benchmark, sentences: 10, repeats: 1, backend: pytorch}\n"
        + "  - {type: finetune, epochs: 1}\n"
    )
    result = run(make_recipe(tiny_minilm, out, steps), store=store)
    # The last step must refuse: an ONNX model cannot be trained.
    assert result.status == "failed" and "needs a PyTorch model" in result.error
    fp32, onnx = result.variants
    assert result.summary[1]["backend"] == "onnxruntime"  # the fp32 variant timed in ORT
    assert (
        result.summary[4]["backend"] == "onnxruntime" and result.summary[5]["backend"] == "pytorch"
    )
    assert result.summary[4]["parameters"] == result.summary[5]["parameters"] > 0
    info = json.loads((onnx / "slimpajama.json").read_text())
    assert info["weights_format"] == "onnx_int8" and (onnx / "model.onnx").is_file()
    assert info["metrics"]["benchmark"]["backend"] == "pytorch"  # the last benchmark wins
    assert abs(info["onnx"]["baseline_accuracy"] - info["metrics"]["eval"]["accuracy"]) <= 0.03
    handle = open_model(onnx)
    assert handle.info.dtype == "onnx_int8" and handle.info.num_labels == 2
    assert handle.info.size_bytes < open_model(fp32).info.size_bytes
    model, tok = handle.load_model(), handle.load_tokenizer()
    logits = model(**tok(["a fine film"], return_tensors="pt")).logits
    assert logits.shape == (1, 2)


def test_4_bit_embeddings_in_onnxruntime_are_recorded_and_reload(tiny_minilm, tmp_path, store):
    steps = (
        FINETUNE.replace("epochs: 6", "epochs: 3")
        + "  - {type: quantize, backend: onnxruntime, tolerance: 5.0, embedding_bits: 4}\n"
        + "  - type: evaluate\n"
    )
    result = run(make_recipe(tiny_minilm, tmp_path / "out", steps), store=store)
    assert result.status == "done", result.error
    onnx_folder = result.variants[-1]
    info = json.loads((onnx_folder / "slimpajama.json").read_text())
    assert info["weights_format"] == "onnx_int8" and info["onnx"]["embedding_bits"] == 4
    handle = open_model(onnx_folder)
    model, tok = handle.load_model(), handle.load_tokenizer()
    assert model(**tok(["a fine film"], return_tensors="pt")).logits.shape == (1, 2)
    # The evaluate step measured the file as saved: its accuracy is the quantize step's.
    assert result.summary[-1]["accuracy"] == pytest.approx(result.summary[-2]["accuracy"])


def test_dropping_a_layer_reports_it_fully_pruned_for_the_chart(tiny_minilm, tmp_path, store):
    steps = "\n  - {type: prune, method: layers, keep_layers: [1], recovery_epochs: 0}\n"
    rec = Recorder()
    result = run(make_recipe(tiny_minilm, tmp_path / "out", steps), rec, store=store)
    assert result.status == "done", result.error
    (figures,) = [e[2] for e in rec.events if e[0] == "eval" and "sparsity/overall" in e[2]]
    assert figures["sparsity/layer 0"] == pytest.approx(1.0)
    assert figures["sparsity/layer 1"] == pytest.approx(0.0)
    assert figures["sparsity/overall"] == pytest.approx(0.5)
    # The history keeps them, so the chart of a finished job shows the same bars.
    logged = {r.key: r.value for r in store.metrics(result.job_id) if r.key.startswith("sparsity/")}
    assert logged["sparsity/layer 0"] == pytest.approx(1.0)


@pytest.mark.int8
def test_a_pytorch_int8_variant_exports_to_onnx_as_it_is(tiny_minilm, tmp_path, store):
    out = tmp_path / "out"
    steps = (
        FINETUNE.replace("epochs: 6", "epochs: 3")
        + "  - {type: quantize, method: dynamic_int8, tolerance: 5.0}\n"
        + "  - type: export\n"
        + "  - type: evaluate\n"
    )
    result = run(make_recipe(tiny_minilm, out, steps), store=store)
    assert result.status == "done", result.error
    _fp32, pytorch_int8, onnx = result.variants
    info = json.loads((onnx / "slimpajama.json").read_text())
    assert info["weights_format"] == "onnx_int8"
    assert info["onnx"]["activation_bits"] == int8_path.current().activation_bits
    # Same int8 model, other runtime: the eval accuracy is the PyTorch int8 one.
    assert info["metrics"]["training"]["eval_accuracy"] == pytest.approx(
        info["onnx"]["baseline_accuracy"], abs=0.02
    )
    size = open_model(onnx).info.size_bytes
    assert size <= 1.1 * open_model(pytorch_int8).info.size_bytes
    # Quantizing it again in onnxruntime is refused with a sentence.
    twice = "\n  - {type: quantize, method: dynamic_int8, tolerance: 100}\n" + (
        "  - {type: quantize, method: dynamic_int8, backend: onnxruntime}\n"
    )
    again = run(make_recipe(tiny_minilm, tmp_path / "twice", twice), store=store)
    assert again.status == "failed" and "without quantizing it twice" in again.error


def test_an_fp32_export_checks_it_gives_the_same_logits(tiny_minilm, tmp_path, store, monkeypatch):
    """An fp32 export promises PyTorch's logits: the figures are measured on the eval
    rows, and an export that does not keep the promise is refused, not saved."""
    steps = "\n  - type: export\n"
    result = run(make_recipe(tiny_minilm, tmp_path / "out", steps), store=store)
    assert result.status == "done", result.error
    info = json.loads((result.variants[-1] / "slimpajama.json").read_text())
    assert info["weights_format"] == "onnx_fp32"
    assert info["onnx"]["max_abs_logit_diff"] < 1e-4 and info["onnx"]["agreement"] == 1.0
    assert result.summary[-1]["agreement"] == 1.0

    real = quantize_handlers.onnx_export.save_onnx_variant

    def off_by_a_little(model, tokenizer_src, folder, **kw):
        import copy

        broken = copy.deepcopy(model)
        with torch.no_grad():
            broken.classifier.bias += 0.01
        return real(broken, tokenizer_src, folder, **kw)

    monkeypatch.setattr(quantize_handlers.onnx_export, "save_onnx_variant", off_by_a_little)
    again = run(make_recipe(tiny_minilm, tmp_path / "again", steps), store=store)
    assert again.status == "failed" and "logits differ" in again.error and "0.01" in again.error
    assert again.variants == [] and not (tmp_path / "again" / "01-export").exists()


def test_vocabulary_pruning_keeps_words_of_train_rows_left_out_by_max_rows(
    tiny_minilm, tmp_path, store
):
    from slimpajama_gui.core import data as data_mod
    from slimpajama_gui.core.model.tokenizers import load_tokenizer

    dataset = "train: demo\n  max_rows: 20"
    result = run(
        make_recipe(
            tiny_minilm, tmp_path / "out", "\n  - {type: prune, method: vocabulary}\n", dataset
        ),
        store=store,
    )
    assert result.status == "done", result.error
    ds = data_mod.load_dataset(data_mod.DatasetSpec(train="demo", max_rows=20))
    source = load_tokenizer(tiny_minilm)
    sampled = {w for t in ds.train.texts for w in source.tokenize(t)}
    unsampled = sorted(
        {w for t in ds.vocabulary_texts for w in source.tokenize(t)} - sampled - {"[UNK]"}
    )
    assert len(unsampled) > 50  # the 20 sampled rows miss most of the demo's words
    pruned = load_tokenizer(result.variants[-1])
    unk = pruned.unk_token_id
    kept = [w for w in unsampled if pruned.convert_tokens_to_ids(w) != unk]
    assert kept == unsampled


# ------------------------------------------------- vocabulary pruning on sentence pairs

#: The second column holds words the first never uses.
PAIR_FIRST = ["a good film", "the plot is bad", "i loved it", "not worth it", "a fine story"]
PAIR_SECOND = [
    "The zebra played a xylophone in Kyoto.",
    "quantum jellyfish waltz at dawn",
    "marmalade volcano",
    "penguins of the tundra",
]
PAIR_TRAIN = [(PAIR_FIRST[i % 5], PAIR_SECOND[i % 4], i % 2) for i in range(40)]
#: Eval has words that are in neither train column (so its figures are not zero).
PAIR_EVAL = [
    ("a good film", "The zebra played a xylophone in Kyoto.", 1),
    ("a harpsichord film", "zebra", 0),
    ("i loved it", "Tchaikovsky in Reykjavik", 1),
    ("not worth it", "penguins of the tundra", 0),
    ("wombats", "marmalade volcano", 1),
    ("the plot is bad", "quantum jellyfish", 0),
]


def write_pairs(path: Path, rows) -> Path:
    import csv

    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sentence", "second", "label"])
        writer.writerows(rows)
    return path


def pair_dataset(tmp_path: Path) -> str:
    train = write_pairs(tmp_path / "train.csv", PAIR_TRAIN)
    ev = write_pairs(tmp_path / "eval.csv", PAIR_EVAL)
    return f"train: {train}\n  eval: {ev}\n  text_pair_column: second"


def wordpiece(word: str, vocab: set[str]) -> list[str]:
    """Greedy longest-match-first WordPiece (BERT's), written out for the test."""
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while (
            end > start and (word[start:end] if start == 0 else "##" + word[start:end]) not in vocab
        ):
            end -= 1
        if end == start:
            return ["[UNK]"]
        pieces.append(word[start:end] if start == 0 else "##" + word[start:end])
        start = end
    return pieces


def pair_logits(model_folder: Path, texts, pairs, max_length: int = 48) -> torch.Tensor:
    from slimpajama_gui.core import data as data_mod
    from slimpajama_gui.core.model.tokenizers import load_tokenizer

    handle = open_model(model_folder)
    model, tok = handle.load_model(num_labels=2).eval(), load_tokenizer(model_folder)
    enc = data_mod.encode(texts, tok, max_length, pairs)
    rows = [
        {"input_ids": ids, "token_type_ids": types}
        for ids, types in zip(enc.input_ids, enc.token_type_ids, strict=True)
    ]
    batch = data_mod.collate(rows, tok.pad_token_id)
    with torch.inference_mode():
        return model(**batch).logits


def test_a_no_change_step_checks_its_promise_on_every_text_column(tiny_minilm, tmp_path, store):
    """Vocabulary pruning of sentence pairs keeps the words of the second column, gives
    the same logits on every train pair, and reports [UNK] and changed-row figures that
    are measured (here known and non-zero on eval)."""
    from slimpajama_gui.core.model.tokenizers import load_tokenizer

    steps = "\n  - {type: prune, method: vocabulary, keep_general: 0}\n"
    recipe = make_recipe(tiny_minilm, tmp_path / "out", steps, pair_dataset(tmp_path))
    result = run(recipe, store=store)
    assert result.status == "done", result.error
    variant = result.variants[-1]
    old, new = load_tokenizer(tiny_minilm), load_tokenizer(variant)  # as saved

    # The zebra sentence of the second column reads the same tokens, renumbered.
    a, b = "a good film", "The zebra played a xylophone in Kyoto."
    old_tokens = old.convert_ids_to_tokens(old(a, b)["input_ids"])
    assert old_tokens.count("[UNK]") == 0
    assert new.convert_ids_to_tokens(new(a, b)["input_ids"]) == old_tokens
    assert new(a, b)["input_ids"] == new.convert_tokens_to_ids(old_tokens)

    # Every train pair: the same logits from the pruned model.
    texts, pairs = [r[0] for r in PAIR_TRAIN], [r[1] for r in PAIR_TRAIN]
    before = pair_logits(tiny_minilm, texts, pairs)
    after = pair_logits(variant, texts, pairs)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)

    # The figures, computed here from the original tokenizer and WordPiece by hand.
    specials = {"[CLS]", "[SEP]", "[PAD]", "[MASK]"}
    train_ids = [old(t, p)["input_ids"] for t, p in zip(texts, pairs, strict=True)]
    kept = {tok for ids in train_ids for tok in old.convert_ids_to_tokens(ids)}
    kept |= specials | {"[UNK]"}  # special tokens are always kept

    def words(text: str) -> list[str]:
        norm = old.backend_tokenizer.normalizer.normalize_str(text)
        return [w for w, _ in old.backend_tokenizer.pre_tokenizer.pre_tokenize_str(norm)]

    changed = unk = tokens = 0
    for t, p, _ in PAIR_EVAL:
        was = old.convert_ids_to_tokens(old(t, p)["input_ids"])
        now = ["[CLS]"]
        for text in (t, p):
            now += [piece for w in words(text) for piece in wordpiece(w, kept)] + ["[SEP]"]
        assert new.convert_ids_to_tokens(new(t, p)["input_ids"]) == now
        changed += now != was
        unk += now.count("[UNK]")
        tokens += sum(tok not in specials for tok in now)
    assert 0 < changed < len(PAIR_EVAL) and unk > 0
    report = json.loads((variant / "slimpajama.json").read_text())["prune"]
    assert report["changed_on_eval"] == pytest.approx(changed / len(PAIR_EVAL))
    assert report["unk_rate_on_eval"] == pytest.approx(unk / tokens)
    assert report["unk_rate_on_eval_before"] == 0.0
    assert report["unk_rate_on_texts"] == 0.0
    assert (report["train_rows"], report["eval_rows"]) == (40, len(PAIR_EVAL))
    assert report["kept"] == len(kept)
    # The step's summary (CLI, job log) carries the same figures.
    summary = result.summary[-1]
    assert summary["changed_on_eval"] == report["changed_on_eval"]
    assert summary["unk_rate_on_eval"] == report["unk_rate_on_eval"]


#: Train pairs with capitals, so a tokenizer that stops lowercasing reads other ids.
CASED_TRAIN = [("A Good Film", "The Zebra played in Kyoto.", i % 2) for i in range(20)]


def bert_source_without_tokenizer_class(tiny_minilm: Path, folder: Path, kind: str) -> Path:
    """A copy of the tiny model whose tokenizer files name no class: it loads by its
    config.json (model_type bert) as BERT's tokenizer, with do_lower_case from the
    tokenizer config (false here, unlike the tokenizer.json's normalizer)."""
    import shutil

    shutil.copytree(tiny_minilm, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    del config["tokenizer_class"]
    if kind == "vocab.txt only":
        (folder / "tokenizer_config.json").unlink()
        (folder / "tokenizer.json").unlink()
    else:
        config["do_lower_case"] = False
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("kind", ["do_lower_case false", "vocab.txt only"])
def test_every_saved_variant_reads_with_the_tokenizer_it_was_measured_with(
    tiny_minilm, tmp_path, store, kind
):
    """A variant's config.json names model_type slimpajama, not the source's bert: its
    tokenizer must still load as the one the job used (same tokens), for a step that
    changes no ids (dropping no layer) and for vocabulary pruning."""
    from slimpajama_gui.core.model.tokenizers import load_tokenizer

    source = bert_source_without_tokenizer_class(tiny_minilm, tmp_path / "src", kind)
    train = write_pairs(tmp_path / "train.csv", CASED_TRAIN)
    steps = (
        "\n  - {type: prune, method: layers, keep_layers: [0, 1], recovery_epochs: 0}"
        "\n  - {type: prune, method: vocabulary}\n"
    )
    dataset = f"train: {train}\n  eval: {train}\n  text_pair_column: second"
    result = run(make_recipe(source, tmp_path / "out", steps, dataset), store=store)
    assert result.status == "done", result.error
    texts, pairs = [r[0] for r in CASED_TRAIN], [r[1] for r in CASED_TRAIN]
    old = load_tokenizer(source)
    expected = [
        old.convert_ids_to_tokens(old(t, p)["input_ids"]) for t, p in zip(texts, pairs, strict=True)
    ]
    for variant in result.variants:
        tok = load_tokenizer(variant)
        got = [
            tok.convert_ids_to_tokens(tok(t, p)["input_ids"])
            for t, p in zip(texts, pairs, strict=True)
        ]
        assert got == expected, variant.name
    before = pair_logits(source, texts, pairs)
    torch.testing.assert_close(
        pair_logits(result.variants[-1], texts, pairs), before, rtol=0, atol=1e-6
    )


def test_vocabulary_pruning_that_would_change_train_tokens_fails_and_saves_nothing(
    tiny_minilm, tmp_path, store, monkeypatch
):
    from tokenizers import normalizers

    from slimpajama_gui.core.techniques.prune import vocabulary

    real = vocabulary._load_tokenizer

    def pruned_stops_lowercasing(folder):
        tok = real(folder)
        if Path(folder).name.startswith("tokenizer-"):  # the step's written tokenizer
            tok.backend_tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False)
        return tok

    monkeypatch.setattr(vocabulary, "_load_tokenizer", pruned_stops_lowercasing)
    train = write_pairs(tmp_path / "train.csv", CASED_TRAIN)
    dataset = f"train: {train}\n  eval: {train}\n  text_pair_column: second"
    steps = "\n  - {type: prune, method: vocabulary, keep_general: 0}\n"
    result = run(make_recipe(tiny_minilm, tmp_path / "out", steps, dataset), store=store)
    assert result.status == "failed" and result.failed_step == "step 1 (prune)"
    assert "20 of 20 train rows" in result.error and "'The Zebra played in Kyoto.'" in result.error
    assert result.variants == [] and not (tmp_path / "out" / "01-prune").exists()


def _stop_on_first_call(control: Control, fn, calls: list):
    def first_stops(*args, **kwargs):
        calls.append(1)
        control.request_stop()
        return fn(*args, **kwargs)

    return first_stops


@pytest.mark.parametrize("phase", ["importance", "vocabulary", "benchmark"])
def test_a_stop_inside_a_loop_of_a_step_is_honoured_at_the_next_item(
    tiny_minilm, tmp_path, store, monkeypatch, phase
):
    """Loops besides training check the stop flag per item: the step ends cancelled after
    the item in progress, and writes nothing."""
    from slimpajama_gui.core.runtime import bench as bench_mod
    from slimpajama_gui.core.runtime.bench import TorchRunner
    from slimpajama_gui.core.techniques.prune import structured as prune_mod
    from slimpajama_gui.core.techniques.prune import vocabulary as vocab_mod

    control = Control()
    calls: list[int] = []
    later: list[int] = []
    if phase == "importance":  # scoring heads: up to 32 batches of 4
        step = "{type: prune, method: heads, amount: 0.5, recovery_epochs: 0, batch_size: 4}"
        monkeypatch.setattr(
            prune_mod, "_batch_loss", _stop_on_first_call(control, prune_mod._batch_loss, calls)
        )
    elif phase == "vocabulary":  # reading every train row, chunk by chunk
        step = "{type: prune, method: vocabulary}"
        monkeypatch.setattr(
            vocab_mod,
            "_load_tokenizer",
            _stop_on_first_call(control, vocab_mod._load_tokenizer, calls),
        )
        real_write = vocab_mod.write_remapped_tokenizer
        monkeypatch.setattr(
            vocab_mod, "write_remapped_tokenizer", lambda *a: later.append(1) or real_write(*a)
        )
    else:  # warm-up, latency and throughput calls
        step = "{type: benchmark, threads: 1, sentences: 8, warmup: 4, repeats: 3, throughput_batch: 2}"

        class FirstCallStops(TorchRunner):
            def __call__(self, inputs):
                calls.append(1)
                control.request_stop()
                return super().__call__(inputs)

        # runner_for makes every benchmark path's PyTorch runner.
        monkeypatch.setattr(bench_mod, "TorchRunner", FirstCallStops)
    out = tmp_path / "out"
    result = run(make_recipe(tiny_minilm, out, f"  - {step}\n"), control=control, store=store)
    step_type = "benchmark" if phase == "benchmark" else "prune"
    assert (result.status, result.error) == ("cancelled", f"cancelled during step 1 ({step_type})")
    assert len(calls) == 1 and not later
    assert store.get_job(result.job_id).status == "cancelled"
    assert not out.exists() or not any(out.iterdir())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_job_clears_what_a_killed_job_left_in_its_output_folder(tiny_minilm, tmp_path, store):
    from slimpajama_gui.core.storage.leftovers import make_scratch, sweep_outputs

    out = tmp_path / "out"
    (out / "01-finetune").mkdir(parents=True)
    (out / "01-finetune" / "model.safetensors").write_bytes(b"complete")
    # What a job killed mid-export and mid-save leaves: scratch beside, staging inside.
    scratch = make_scratch(out, job_id=3)
    (scratch / "onnx-02").mkdir()
    (scratch / "onnx-02" / "model.onnx").write_bytes(b"half an export")
    (out / ".02-export.staging-0123abcd").mkdir()
    # Another output folder's scratch in the same parent is not this job's to clear.
    other = make_scratch(tmp_path / "other", job_id=4)
    hidden = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert len(hidden) == 2

    # A folder another job holds is left alone...
    with OutputLock(out, job_id=9):
        assert sweep_outputs([out]) == []
    assert scratch.exists()
    # ...and the next job that writes there clears it first.
    result = run(make_recipe(tiny_minilm, out, "  - type: evaluate\n"), store=store)
    assert result.status == "done", result.error
    assert sorted(p.name for p in out.iterdir()) == ["01-finetune"]
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == [other]
    assert (out / "01-finetune" / "model.safetensors").read_bytes() == b"complete"


def _named_demo(folder: Path) -> tuple[Path, Path]:
    """The demo data with its 0/1 labels written as names, as many real files have them."""
    from slimpajama_gui.core.data.dataset import demo_path

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for split in ("train", "dev"):
        lines = demo_path(split).read_text(encoding="utf-8").splitlines()
        rows = [lines[0]] + [
            t + "\t" + ("negative" if y == "0" else "positive")
            for t, y in (line.rsplit("\t", 1) for line in lines[1:])
        ]
        files.append(folder / f"{split}.tsv")
        files[-1].write_text("\n".join(rows) + "\n", encoding="utf-8")
    return files[0], files[1]


def test_labels_are_matched_to_a_trained_head_by_name(tiny_minilm, tmp_path, store):
    """Kind: label ids a model cannot represent as the data means them. A trained head's
    row i is the class it was trained as id i: data listing the same names in another
    order is numbered as the head is; other names never reuse the trained rows."""
    train, dev = _named_demo(tmp_path / "data")
    data = f"train: {train}\n  eval: {dev}"
    first = run(
        make_recipe(tiny_minilm, tmp_path / "a", FINETUNE + "  - type: evaluate\n", data),
        store=store,
    )
    assert first.status == "done", first.error
    trained = first.variants[0]
    accuracy = first.summary[-1]["accuracy"]
    assert accuracy >= 0.7

    def evaluate(labels: str, out: str) -> tuple[PipelineResult, Recorder]:
        recipe = make_recipe(trained, tmp_path / out, "  - type: evaluate\n", data)
        recipe.dataset["labels"] = [s.strip() for s in labels.split(",")]
        recorder = Recorder()
        return run(recipe, recorder, store=store), recorder

    # Same names, other order: the same predictions, the same accuracy.
    result, recorder = evaluate("positive, negative", "reversed")
    assert result.status == "done", result.error
    assert result.summary[-1]["accuracy"] == pytest.approx(accuracy)  # was 1 - accuracy
    assert any("matched by name" in m for m in recorder.messages)
    # Other names for as many classes: the trained rows mean other classes, so the head
    # is new, and scoring it before any training is refused with a sentence.
    (tmp_path / "data2").mkdir()
    for path in (train, dev):
        text = path.read_text(encoding="utf-8").replace("\tnegative", "\tbad")
        (tmp_path / "data2" / path.name).write_text(text.replace("\tpositive", "\tgood"))
    recipe = make_recipe(
        trained,
        tmp_path / "other",
        "  - type: evaluate\n",
        f"train: {tmp_path / 'data2' / 'train.tsv'}\n  eval: {tmp_path / 'data2' / 'dev.tsv'}",
    )
    recipe.dataset["labels"] = ["bad", "good"]
    other = run(recipe, store=store)
    assert other.status == "failed"
    assert "trained for 2 labels ('negative', 'positive')" in other.error
    assert "Put a finetune step first" in other.error
    assert not (tmp_path / "other").exists()


# --------------------------------------------------------------------------- variant records


def test_the_history_row_of_a_variant_holds_the_figures_its_record_holds(
    tiny_minilm, tmp_path, store
):
    """Fine-tune → evaluate → benchmark: the evaluate and benchmark figures reach the
    variant's row in the history as well as its slimpajama.json (one code path)."""
    from slimpajama_gui.core.storage.variant import VariantRecord

    out = tmp_path / "out"
    steps = FINETUNE + "  - type: evaluate\n  - type: benchmark\n    sentences: 8\n    repeats: 2\n"
    result = run(make_recipe(tiny_minilm, out, steps), store=store)
    assert result.status == "done", result.error
    variant = result.variants[0]
    info = json.loads((variant / "slimpajama.json").read_text())
    [row] = store.variants(result.job_id)
    assert row.metrics == info["metrics"]  # the whole figures, not those known at save time
    assert row.metrics["eval"]["accuracy"] == info["metrics"]["eval"]["accuracy"]
    assert row.metrics["eval"]["accuracy"] == pytest.approx(result.summary[1]["accuracy"])
    p50 = info["metrics"]["benchmark"]["latency_p50_ms"]
    assert measured(p50) and row.metrics["benchmark"]["latency_p50_ms"] == p50
    # The evaluate step's predictions are kept beside the record, in the data's row order.
    record = VariantRecord.read(variant)
    stored = record.read_predictions(variant, "eval")
    assert record.recipe_dir == str(tmp_path)
    assert len(stored.labels) == info["metrics"]["eval"]["n"]
    assert (stored.logits.argmax(1) == stored.labels).mean() == pytest.approx(
        info["metrics"]["eval"]["accuracy"]
    )


def _write_demo_csvs(folder: Path) -> None:
    """The demo set as two CSV files under ``folder/data`` (for relative paths)."""
    import csv

    from slimpajama_gui.core.data.dataset import DatasetSpec, load_dataset

    demo = load_dataset(DatasetSpec())
    (folder / "data").mkdir(parents=True)
    for name, split in (("train", demo.train), ("eval", demo.eval)):
        with open(folder / "data" / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["sentence", "label"])
            for text, label in zip(split.texts, split.labels, strict=True):
                writer.writerow([text, demo.label_names[label]])


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_a_rerun_never_writes_where_an_earlier_run_or_a_queued_job_writes(tmp_path, store):
    """Kind: Re-run and the folders it may not touch: the job's own output, one an
    earlier re-run made, and one a queued job will write to."""
    from slimpajama_gui.core.jobs.pipeline import recipe_for_rerun

    yaml = "name: j\nmodel: packaged\ndataset: {train: demo}\noutput: out\nsteps:\n  - type: evaluate\n"
    job_id = store.create_job("j", yaml, str(tmp_path / "out"), recipe_dir=tmp_path)
    job = store.get_job(job_id)
    assert recipe_for_rerun(job).output == str(tmp_path / "out-run2")
    (tmp_path / "out-run2").mkdir()
    queued = [tmp_path / "out-run3"]
    assert recipe_for_rerun(job, taken=queued).output == str(tmp_path / "out-run4")
    # A re-run of a re-run is the next run of the same job, not "out-run2-run2".
    again = store.create_job("j", yaml, str(tmp_path / "out-run2"), recipe_dir=tmp_path)
    assert recipe_for_rerun(store.get_job(again), taken=queued).output == str(tmp_path / "out-run4")


def test_rerun_of_a_recorded_job_reads_the_recipe_folder_from_any_working_folder(
    tiny_minilm, tmp_path, store, monkeypatch
):
    """A recipe with relative data paths run from folder X; Re-run through the history
    record from folder Y runs and reads the same files."""
    from slimpajama_gui.core.jobs.pipeline import recipe_for_rerun
    from slimpajama_gui.core.plan.recipe import load_recipe

    x, y = tmp_path / "x", tmp_path / "y"
    _write_demo_csvs(x)
    y.mkdir()
    (x / "recipe.yaml").write_text(
        f"name: relative\nmodel: {tiny_minilm}\n"
        "dataset: {train: data/train.csv, eval: data/eval.csv, max_length: 32}\n"
        "output: out\nsteps:\n  - {type: finetune, epochs: 1, batch_size: 16, max_steps: 2}\n"
        "  - type: evaluate\n"
    )
    monkeypatch.chdir(x)
    first = run(load_recipe(Path("recipe.yaml")), store=store)
    assert first.status == "done", first.error
    assert store.get_job(first.job_id).recipe_dir == str(x)

    monkeypatch.chdir(y)
    recipe = recipe_for_rerun(store.get_job(first.job_id))
    assert recipe.resolve_path("data/train.csv") == x / "data" / "train.csv"
    before = _tree_bytes(x / "out")
    again = run(recipe, store=store)
    assert again.status == "done", again.error
    # A new folder named after the job's and the run; the first run's files untouched.
    assert again.variants == [x / "out-run2" / "01-finetune"] and not (y / "out").exists()
    assert _tree_bytes(x / "out") == before
    n = json.loads((x / "out-run2" / "01-finetune" / "slimpajama.json").read_text())
    assert n["metrics"]["eval"]["n"] == len((x / "data" / "eval.csv").read_text().splitlines()) - 1


def test_an_already_quantized_source_is_refused_before_any_step(tiny_minilm, tmp_path, store):
    """Kind: a source whose weights cannot go through the chain (here PyTorch int8 asked
    to prune) ends the job with a sentence before step 1, writing nothing; measuring it
    still runs."""
    import shutil

    from slimpajama_gui.core.model.encoder import EncoderClassifier
    from slimpajama_gui.core.techniques.quantize.folders import save_quantized
    from slimpajama_gui.core.techniques.quantize.methods import quantize_model

    source = tmp_path / "int8"
    source.mkdir()
    result = quantize_model(EncoderClassifier.from_pretrained(tiny_minilm), "dynamic_int8")
    save_quantized(result.model, result, source)
    for f in tiny_minilm.iterdir():
        if f.is_file() and not (source / f.name).exists():
            shutil.copy(f, source / f.name)
    out = tmp_path / "out"
    failed = run(make_recipe(source, out, "  - {type: prune, method: vocabulary}\n"), store=store)
    assert failed.status == "failed" and failed.failed_step == "loading the model and data"
    assert failed.error.startswith(
        "int8 is an already quantized model (dynamic_int8): it cannot be pruned;"
    )
    assert "internal error" not in failed.error and not out.exists()
    measured = run(make_recipe(source, out, "  - type: evaluate\n"), store=store)
    assert measured.status == "done", measured.error
