"""Bad models (docs/reliability.md M1-M12) and three kinds of fault found by trying them:

* kind 2 (P1): a symbolic link in a model folder never takes the app outside the folder;
* kind 6 (X1): a training that diverges without a NaN loss fails its step, nothing is
  saved from it, and a model with inf/NaN weights never shows NaN figures;
* kind 8 (E1): any bytes in a model file give a sentence, never an internal error, and
  one damaged model never hides the others.

Each row has a test named after its code; the property-based tests feed the safetensors
header reader and the config.json reader arbitrary bytes (Hypothesis).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import shutil
import socket
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.catalog import discover_models
from slimpajama_gui.core.model.checkpoints import load_pretrained
from slimpajama_gui.core.model.encoder import EncoderClassifier
from slimpajama_gui.core.model.inspection import inspect_model
from slimpajama_gui.core.model.saving import copy_tokenizer_files, save_pretrained
from slimpajama_gui.core.model.tokenizers import load_tokenizer
from slimpajama_gui.core.runtime import loading
from slimpajama_gui.core.runtime.evaluate import predict
from slimpajama_gui.core.runtime.loading import open_model
from slimpajama_gui.core.runtime.predictor import ModelPredictor
from slimpajama_gui.core.storage.safe_io import (
    MAX_HEADER_BYTES,
    load_safetensors,
    read_json_object,
    read_safetensors_header,
)
from slimpajama_gui.core.techniques.train import Diverged, TrainConfig, train
from tests.conftest import write_tiny_bert

#: Examples each property test runs (bounded: the suite runs on 2 shared cores).
EXAMPLES = 200


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A tiny BERT classifier with its tokenizer; tests copy it before changing it."""
    return write_tiny_bert(tmp_path_factory.mktemp("pristine") / "tiny-bert")


@pytest.fixture
def model_dir(pristine: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "models" / "tiny-bert"
    shutil.copytree(pristine, folder)
    return folder


@pytest.fixture
def no_network(monkeypatch):
    def guard(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", guard)
    monkeypatch.setattr(socket, "create_connection", guard)


def raw_safetensors(path: Path, header: object, data: bytes = b"", declared: int | None = None):
    """A safetensors file written by hand, so its header can lie."""
    raw = json.dumps(header).encode() if not isinstance(header, bytes) else header
    path.write_bytes(struct.pack("<Q", len(raw) if declared is None else declared) + raw + data)
    return path


def edit_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


class Canary:
    """Unpickling this creates ``path``: a stand-in for ``os.system`` in a hostile pickle."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def one_sentence(exc: BaseException) -> str:
    """The message of a refusal, checked to be a sentence for a person."""
    text = str(exc)
    assert isinstance(exc, UserError), f"{type(exc).__name__}: {text}"
    assert text and "Traceback" not in text and len(text) < 2000
    return text


# --------------------------------------------------------------------------- M1-M12


def test_M1_header_longer_than_the_file_or_over_100_mb_is_refused(tmp_path: Path) -> None:
    long = raw_safetensors(tmp_path / "long.safetensors", {}, declared=10_000)
    with pytest.raises(UserError, match=r"not a valid safetensors file: long\.safetensors"):
        read_safetensors_header(long)
    huge = tmp_path / "huge.safetensors"
    with huge.open("wb") as fh:  # sparse: the header is refused before it is read
        fh.write(struct.pack("<Q", MAX_HEADER_BYTES + 1))
        fh.truncate(MAX_HEADER_BYTES + 100)
    with pytest.raises(UserError, match=r"not a valid safetensors file: huge\.safetensors"):
        read_safetensors_header(huge)


def test_M2_truncated_safetensors_is_incomplete(model_dir: Path) -> None:
    weights = model_dir / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="file is incomplete: model.safetensors"):
        inspect_model(model_dir)
    with pytest.raises(UserError, match="file is incomplete"):
        open_model(model_dir)


def test_M3_overlapping_or_out_of_range_offsets_are_refused_without_fallback(
    tmp_path: Path, monkeypatch
) -> None:
    import safetensors.torch

    def rust_loader(*args, **kwargs):
        raise AssertionError("a refused file must never reach the safetensors loader")

    monkeypatch.setattr(safetensors.torch, "load_file", rust_loader)
    overlap = {
        "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
    }
    path = raw_safetensors(tmp_path / "overlap.safetensors", overlap, b"\0" * 24)
    with pytest.raises(UserError, match="overlaps"):
        load_safetensors(path)
    outside = {"a": {"dtype": "F32", "shape": [4], "data_offsets": [-16, 0]}}
    path = raw_safetensors(tmp_path / "outside.safetensors", outside, b"\0" * 16)
    with pytest.raises(UserError, match="outside its data"):
        load_safetensors(path)


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "model.ckpt"])
def test_M4_pickle_only_folder_is_refused_with_how_to_convert(model_dir: Path, name: str) -> None:
    (model_dir / "model.safetensors").unlink()
    (model_dir / name).write_bytes(b"not opened")
    with pytest.raises(UserError) as info:
        inspect_model(model_dir)
    text = one_sentence(info.value)
    assert f"holds pickle weights ({name})" in text and "safe_serialization=True" in text


def test_M5_pickle_canary_never_runs(model_dir: Path, tmp_path: Path) -> None:
    canary = tmp_path / "CANARY"
    payload = pickle.dumps(Canary(canary))
    pickle.loads(payload).close()  # the payload is live: unpickling creates the file
    assert canary.exists()
    canary.unlink()
    (model_dir / "model.safetensors").unlink()
    for name in ("pytorch_model.bin", "model.pt", "optimizer.pt", "checkpoint.ckpt"):
        (model_dir / name).write_bytes(payload)
    for attempt in (
        lambda: inspect_model(model_dir),
        lambda: open_model(model_dir / "optimizer.pt"),
        lambda: load_pretrained(EncoderClassifier, model_dir),
        lambda: discover_models([model_dir], include_packaged=False, include_hf_cache=False),
    ):
        try:
            attempt()
        except UserError as exc:
            assert "pickle" in str(exc)
    assert not canary.exists()


def test_M6_remote_code_keys_are_refused_and_named(model_dir: Path) -> None:
    edit_config(model_dir, auto_map={"AutoModel": "evil.Model"}, architectures=["EvilModel"])
    with pytest.raises(UserError, match="auto_map"):
        inspect_model(model_dir)
    with pytest.raises(UserError, match="auto_map"):
        load_pretrained(EncoderClassifier, model_dir)


def test_M7_attn_implementation_naming_a_hub_repo_is_refused(model_dir, no_network) -> None:
    edit_config(model_dir, attn_implementation="kernels-community/evil")
    with pytest.raises(UserError, match="attn_implementation='kernels-community/evil'"):
        inspect_model(model_dir)
    with pytest.raises(UserError, match="attn_implementation"):
        load_pretrained(EncoderClassifier, model_dir)


def test_M8_unsupported_architecture_lists_the_supported(model_dir: Path) -> None:
    edit_config(model_dir, model_type="gpt2")
    with pytest.raises(UserError) as info:
        inspect_model(model_dir)
    assert "unsupported architecture gpt2; supported: bert, roberta, slimpajama" in str(info.value)


def test_M9_config_not_json_names_the_file_and_line(model_dir: Path) -> None:
    config = model_dir / "config.json"
    config.write_text('{\n  "model_type": "bert",\n  oops\n}')
    with pytest.raises(UserError, match=r"config\.json is not valid JSON \(line 3"):
        inspect_model(model_dir)
    config.write_text("")
    with pytest.raises(UserError, match="is empty"):
        inspect_model(model_dir)
    config.unlink()
    with pytest.raises(UserError, match="no config.json"):
        inspect_model(model_dir)


def test_M10_missing_tokenizer_is_named_and_never_downloaded(model_dir, no_network) -> None:
    for name in ("vocab.txt", "tokenizer.json"):
        (model_dir / name).unlink(missing_ok=True)
    with pytest.raises(UserError, match=f"tokenizer not found in {model_dir}"):
        inspect_model(model_dir)
    with pytest.raises(UserError, match="tokenizer not found"):
        open_model(model_dir)


def test_M11_weights_that_do_not_fit_the_config_list_the_keys(model_dir: Path) -> None:
    edit_config(model_dir, intermediate_size=48)
    with pytest.raises(UserError) as info:
        load_pretrained(EncoderClassifier, model_dir)
    text = one_sentence(info.value)
    assert "do not match its config.json" in text
    assert "layers.0.ffn.intermediate.weight (file (64, 32), config (48, 32))" in text
    # The one part allowed to be new is a classifier head, and it is reported.
    edit_config(model_dir, intermediate_size=64)
    model = load_pretrained(EncoderClassifier, model_dir, num_labels=3)
    assert model.load_report.new_keys == ["classifier.weight", "classifier.bias"]


def test_M11_a_config_of_a_huge_model_is_refused_before_allocating(model_dir: Path) -> None:
    # The file holds a 34-row vocabulary; building 10^11 rows first would exhaust memory.
    edit_config(model_dir, vocab_size=100_000_000_000)
    with pytest.raises(UserError, match="word_embeddings.weight"):
        load_pretrained(EncoderClassifier, model_dir)


def test_M12_a_model_larger_than_free_memory_is_refused_before_loading(
    model_dir: Path, monkeypatch
) -> None:
    handle = open_model(model_dir)
    monkeypatch.setattr(loading, "available_memory_bytes", lambda: 100)
    with pytest.raises(UserError, match=r"needs about .* only 100 bytes is free"):
        handle.load_model()


# --------------------------------------------------------------------------- kind 2 (P1)


@pytest.mark.parametrize("name", ["vocab.txt", "config.json", "model.safetensors"])
def test_P1_kind2_symlink_outside_the_model_folder_is_refused(
    model_dir: Path, tmp_path: Path, name: str
) -> None:
    outside = tmp_path / "private"
    outside.mkdir()
    secret = outside / "id_rsa"
    shutil.move(model_dir / name, secret)  # a file that would load, so only the link is wrong
    (model_dir / name).symlink_to(secret)
    with pytest.raises(UserError) as info:
        inspect_model(model_dir)
    text = one_sentence(info.value)
    assert f"{name} in {model_dir} is a symbolic link to {secret}, outside the model folder" in (
        text
    )
    infos, skipped = discover_models(
        [model_dir.parent], include_packaged=False, include_hf_cache=False
    )
    assert infos == [] and name in skipped[0]
    reader = load_tokenizer if name == "vocab.txt" else open_model
    with pytest.raises(UserError, match="outside the model folder"):
        reader(model_dir)
    if name == "model.safetensors":
        with pytest.raises(UserError, match="outside the model folder"):
            load_pretrained(EncoderClassifier, model_dir)
    # A result never receives a copy of the outside file.
    result = tmp_path / "result"
    result.mkdir()
    if name == "vocab.txt":
        with pytest.raises(UserError, match="outside the model folder"):
            copy_tokenizer_files(model_dir, result)
    assert not (result / name).exists()


def test_P1_kind2_symlink_inside_the_model_folder_is_fine(model_dir: Path, tmp_path: Path) -> None:
    (model_dir / "files").mkdir()
    for name in ("vocab.txt", "model.safetensors"):
        shutil.move(model_dir / name, model_dir / "files" / name)
        (model_dir / name).symlink_to(Path("files") / name)
    open_model(model_dir).load_model()
    load_tokenizer(model_dir)
    result = tmp_path / "result"
    result.mkdir()
    assert "vocab.txt" in copy_tokenizer_files(model_dir, result)
    copied = result / "vocab.txt"
    assert not copied.is_symlink() and copied.read_bytes() == (model_dir / "vocab.txt").read_bytes()


def test_P1_kind2_a_pipe_or_folder_named_like_a_model_file_is_not_read(model_dir: Path) -> None:
    vocab = model_dir / "vocab.txt"
    vocab.unlink()
    os.mkfifo(vocab)  # reading it would block forever
    copied = copy_tokenizer_files(model_dir, model_dir.parent)
    assert "vocab.txt" not in copied
    config = model_dir / "config.json"
    config.unlink()
    os.mkfifo(config)
    with pytest.raises(UserError, match="not a regular file"):
        read_json_object(config)


def test_P1_kind2_hf_cache_snapshot_links_into_its_blobs_are_fine(pristine, tmp_path, no_network):
    import hashlib

    repo = tmp_path / "hub" / "models--acme--tiny"
    snap = repo / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for f in pristine.iterdir():
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        shutil.copyfile(f, repo / "blobs" / digest)
        (snap / f.name).symlink_to(Path("..") / ".." / "blobs" / digest)
    infos, skipped = discover_models(
        [], cache_dir=tmp_path / "hub", include_packaged=False, include_results=False
    )
    assert [i.name for i in infos] == ["acme/tiny"] and skipped == []
    load_tokenizer(snap)
    open_model(snap).load_model()


def test_P1_kind2_save_compares_resolved_paths(model_dir: Path, tmp_path: Path) -> None:
    model = load_pretrained(EncoderClassifier, model_dir)
    alias = tmp_path / "alias"
    alias.symlink_to(model_dir)
    before = {p.name: p.read_bytes() for p in model_dir.iterdir()}
    with pytest.raises(UserError, match="source model is never overwritten"):
        save_pretrained(model, alias)
    assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == before


def test_P1_kind2_a_link_to_an_output_folder_takes_the_same_lock(tmp_path: Path) -> None:
    from slimpajama_gui.core.storage.locks import OutputLock

    out = tmp_path / "out"
    out.mkdir()
    alias = tmp_path / "alias"
    alias.symlink_to(out)
    with OutputLock(out, job_id=1), pytest.raises(UserError, match="already being written"):
        OutputLock(alias, job_id=2).acquire()


# --------------------------------------------------------------------------- kind 6 (X1)


def tiny_batches(model: EncoderClassifier, n: int = 4):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, model.config.vocab_size, (n, 8), generator=generator)
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": torch.arange(n) % 2,
    }


def test_X1_kind6_training_that_diverges_without_a_nan_loss_fails(model_dir: Path) -> None:
    model = load_pretrained(EncoderClassifier, model_dir, num_labels=2)
    batch = tiny_batches(model)
    config = TrainConfig(learning_rate=1e9, max_steps=1, epochs=1, device="cpu", warmup_ratio=0)
    with pytest.raises(Diverged) as info:
        train(model, lambda epoch: [batch], 1, config)
    text = one_sentence(info.value)
    assert "diverged by optimizer step 1" in text and "learning rate (now 1e+09)" in text


def test_X1_kind6_a_diverged_job_is_failed_with_its_step_and_saves_nothing(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The learning_rate 1e9 is now refused by the recipe's bounds (kind 9), and no
    # rate inside them diverges a tiny model in a few steps, so the overflow is injected:
    # after each real optimizer step one weight becomes inf, as an fp32 overflow leaves it.
    real_step = torch.optim.AdamW.step

    def overflowing_step(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        with torch.no_grad():
            self.param_groups[0]["params"][0].view(-1)[0] = float("inf")
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", overflowing_step)
    from slimpajama_gui.core.jobs.pipeline import run
    from slimpajama_gui.core.plan.recipe import recipe_from_yaml
    from slimpajama_gui.core.storage.history import JobStore

    out = tmp_path / "out"
    demo = Path(__file__).resolve().parents[2] / "resources" / "demo"
    recipe = recipe_from_yaml(
        f"""
name: diverge
model: {model_dir}
dataset:
  train: {demo / "train.tsv"}
  eval: {demo / "dev.tsv"}
  labels: [negative, positive]
  max_length: 32
output: {out}
steps:
  - type: finetune
    learning_rate: 10
    max_steps: 1
    batch_size: 8
""",
        source="diverge.yaml",
        base_dir=tmp_path,
    )
    with JobStore(tmp_path / "history.sqlite3") as store:
        result = run(recipe, store=store)
        job = store.get_job(result.job_id)
    assert result.status == "failed" and job.status == "failed"
    assert result.failed_step == "step 1 (finetune)"
    assert "diverged" in result.error and "learning rate (now 10)" in result.error
    assert result.variants == []
    assert not any(p.name.startswith("01-") for p in out.iterdir()) if out.exists() else True


def test_X1_kind6_weights_with_nan_are_never_saved(model_dir: Path, tmp_path: Path) -> None:
    model = load_pretrained(EncoderClassifier, model_dir)
    with torch.no_grad():
        model.classifier.weight[0, 0] = float("nan")
    target = tmp_path / "saved"
    with pytest.raises(UserError, match=r"inf/NaN \(classifier.weight\), so it was not saved"):
        save_pretrained(model, target)
    assert not target.exists()


def test_X1_kind6_nan_model_gives_a_sentence_not_nan_figures(model_dir: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = model_dir / "model.safetensors"
    tensors = load_file(str(weights))
    tensors["classifier.weight"][:] = float("nan")
    save_file(tensors, str(weights), metadata={"format": "pt"})
    with pytest.raises(UserError) as info:
        ModelPredictor(model_dir)
    assert "cannot predict: its weights contain inf/NaN (classifier.weight)" in one_sentence(
        info.value
    )
    model = load_pretrained(EncoderClassifier, model_dir)
    batch = tiny_batches(model)
    with pytest.raises(UserError, match="inf/NaN logits for 4 of 4 rows"):
        predict(model, [batch])


# --------------------------------------------------------------------------- kind 8 (E1)


def minimal_tensor() -> tuple[dict, bytes]:
    return {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8


DAMAGED_HEADERS = {
    "metadata is a string": ({"__metadata__": "x", **minimal_tensor()[0]}, b"\0" * 8),
    "metadata values not strings": ({"__metadata__": {"a": 1}, **minimal_tensor()[0]}, b"\0" * 8),
    "gap before the first tensor": (
        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}},
        b"\0" * 16,
    ),
    "trailing bytes": (minimal_tensor()[0], b"\0" * 12),
    "shape of strings": ({"a": {"dtype": "F32", "shape": "22", "data_offsets": [0, 8]}}, b""),
    "infinite shape": (
        b'{"a": {"dtype": "F32", "shape": [Infinity], "data_offsets": [0, 8]}}',
        b"",
    ),
    "list as dtype": ({"a": {"dtype": ["F32"], "shape": [2], "data_offsets": [0, 8]}}, b""),
    "nested thousands deep": (b"[" * 5000 + b"]" * 5000, b""),
    "entry is a number": ({"a": 3}, b""),
}


@pytest.mark.parametrize("case", DAMAGED_HEADERS)
def test_E1_kind8_damaged_safetensors_bytes_give_a_sentence(tmp_path: Path, case: str) -> None:
    header, data = DAMAGED_HEADERS[case]
    path = raw_safetensors(tmp_path / "model.safetensors", header, data)
    with pytest.raises(UserError) as info:
        read_safetensors_header(path)
    assert "model.safetensors" in one_sentence(info.value)


@pytest.mark.parametrize(
    "config",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"model_type": "bert", "a": ' + "[" * 500 + "]" * 500 + "}",
        '{"model_type": "bert", "num_labels": 5000000}',
        '{"model_type": "bert", "num_labels": 1' + "0" * 5000 + "}",
        '{"model_type": "bert", "num_hidden_layers": 1000000000}',
        '{"model_type": "bert", "id2label": {'
        + ", ".join(f'"{i}": "c"' for i in range(200_001))
        + "}}",
    ],
    ids=["deep", "deep-inside", "millions-of-labels", "huge-number", "billion-layers", "id2label"],
)
def test_E1_kind8_damaged_config_json_gives_a_sentence(model_dir: Path, config: str) -> None:
    (model_dir / "config.json").write_text(config)
    with pytest.raises(UserError) as info:
        inspect_model(model_dir)
    assert str(model_dir) in one_sentence(info.value)
    with pytest.raises(UserError):
        load_pretrained(EncoderClassifier, model_dir)


def test_E1_kind8_vocab_without_unk_is_refused_when_the_tokenizer_loads(model_dir: Path) -> None:
    (model_dir / "tokenizer.json").unlink(missing_ok=True)
    vocab = model_dir / "vocab.txt"
    vocab.write_text("\n".join(w for w in vocab.read_text().split("\n") if w != "[UNK]"))
    with pytest.raises(UserError) as info:
        load_tokenizer(model_dir)
    text = one_sentence(info.value)
    assert f"the tokenizer in {model_dir} cannot read text" in text and "vocab.txt" in text


def test_E1_kind8_one_damaged_model_never_hides_the_others(
    pristine: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    from slimpajama_gui import cli

    added = tmp_path / "added"
    for name in ("good", "bad-metadata", "bad-deep"):
        shutil.copytree(pristine, added / name)
    header, data = DAMAGED_HEADERS["metadata is a string"]
    raw_safetensors(added / "bad-metadata" / "model.safetensors", header, data)
    (added / "bad-deep" / "config.json").write_text("[" * 5000 + "]" * 5000)
    cache = tmp_path / "hub"
    repo = cache / "models--acme--broken" / "snapshots" / ("b" * 40)
    shutil.copytree(pristine, repo)
    raw_safetensors(repo / "model.safetensors", header, data)
    (cache / "models--acme--broken" / "refs").mkdir()
    (cache / "models--acme--broken" / "refs" / "main").write_text("b" * 40)

    infos, skipped = discover_models([added], cache_dir=cache, include_packaged=False)
    assert [i.name for i in infos] == ["good"]
    assert len(skipped) == 3 and all("skipped" in s for s in skipped)
    assert any("acme/broken" in s and "__metadata__" in s for s in skipped)

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert cli.main(["models", str(added)]) == 0
    err = capsys.readouterr().err
    assert "__metadata__" in err and "nested more than" in err


# --------------------------------------------------------------------------- properties

HEADER_EXAMPLES: dict[str, int] = {}


def _count(name: str) -> None:
    HEADER_EXAMPLES[name] = HEADER_EXAMPLES.get(name, 0) + 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
dtypes = st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "BOOL", "F4", "X9", ""])
entries = (
    st.fixed_dictionaries(
        {
            "dtype": dtypes | json_values,
            "shape": st.lists(st.integers(-2, 6), max_size=3) | json_values,
            "data_offsets": st.lists(st.integers(-4, 64), min_size=2, max_size=2) | json_values,
        }
    )
    | json_values
)
headers = st.dictionaries(
    st.sampled_from(["a", "b", "c", "__metadata__"]) | st.text(max_size=5), entries, max_size=4
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.binary(max_size=256), declared=st.one_of(st.none(), st.integers(0, 2**64 - 1)))
def test_E1_kind8_property_any_bytes_give_a_header_or_a_sentence(tmp_path_factory, data, declared):
    path = tmp_path_factory.mktemp("bytes") / "model.safetensors"
    if declared is None:
        path.write_bytes(data)
    else:
        path.write_bytes(struct.pack("<Q", declared) + data)
    _count("raw bytes")
    with contextlib.suppress(UserError):
        read_safetensors_header(path)


SIZES = {"F32": 4, "F16": 2, "I64": 8, "U8": 1, "BOOL": 1}


@st.composite
def near_valid_files(draw) -> tuple[object, bytes]:
    """A valid safetensors header and data, then (usually) one damage of the kinds users
    meet: an offset moved, a gap, trailing or missing bytes, odd metadata, a bad entry."""
    names = draw(st.lists(st.text(min_size=1, max_size=4), min_size=0, max_size=3, unique=True))
    header: dict[str, object] = {}
    offset = 0
    for name in names:
        dtype = draw(st.sampled_from(sorted(SIZES)))
        shape = draw(st.lists(st.integers(0, 3), max_size=2))
        size = SIZES[dtype] * math.prod(shape)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    if draw(st.booleans()):
        header["__metadata__"] = {"format": "pt"}
    data_len = offset
    damage = draw(st.sampled_from(["none", "offset", "gap", "trailing", "short", "meta", "entry"]))
    if damage == "offset" and names:
        entry = header[draw(st.sampled_from(names))]
        entry["data_offsets"][draw(st.integers(0, 1))] += draw(st.integers(-3, 3))
    elif damage == "gap" and names:
        for name in names:
            header[name]["data_offsets"] = [x + 4 for x in header[name]["data_offsets"]]
        data_len += 4
    elif damage == "trailing":
        data_len += draw(st.integers(1, 9))
    elif damage == "short":
        data_len = max(0, data_len - draw(st.integers(1, 9)))
    elif damage == "meta":
        header["__metadata__"] = draw(json_values)
    elif damage == "entry":
        header[draw(st.text(max_size=3))] = draw(entries)
    return header, bytes(data_len)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(file=near_valid_files())
def test_E1_kind8_property_the_reader_accepts_exactly_what_safetensors_loads(
    tmp_path_factory, file
):
    """Headers near the valid ones: the reader answers a header or a sentence, and it
    accepts a file exactly when the safetensors library itself reads it (so a file the
    browser lists never fails later in the loader, and no valid file is refused)."""
    from safetensors.numpy import load_file

    header, data = file
    path = tmp_path_factory.mktemp("headers") / "model.safetensors"
    raw_safetensors(path, header, data)
    _count("structured headers")
    try:
        parsed = read_safetensors_header(path)
    except UserError:
        parsed = None
    try:
        loaded = load_file(str(path))
    except Exception:  # noqa: BLE001 - the library's verdict, whatever its type
        loaded = None
    if parsed is not None:
        _count("structured headers accepted")
        assert loaded is not None, f"accepted but safetensors refuses: {header}"
        assert {k: tuple(v.shape) for k, v in loaded.items()} == {
            k: t.shape for k, t in parsed.tensors.items()
        }
    else:
        assert loaded is None, f"refused but safetensors reads it: {header}"


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    text=st.one_of(
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(
            st.sampled_from(
                [
                    "model_type",
                    "num_labels",
                    "id2label",
                    "hidden_size",
                    "num_hidden_layers",
                    "num_attention_heads",
                    "vocab_size",
                    "architectures",
                    "pruned_heads",
                    "intermediate_size",
                    "hidden_act",
                    "auto_map",
                    "layer_norm_eps",
                ]
            ),
            json_values | st.just("bert") | st.integers(-3, 10**30),
            max_size=6,
        ).map(lambda d: json.dumps(d).encode()),
    )
)
def test_E1_kind8_property_any_config_json_gives_a_model_or_a_sentence(
    pristine, tmp_path_factory, text
):
    folder = tmp_path_factory.mktemp("config") / "model"
    shutil.copytree(pristine, folder)
    (folder / "config.json").write_bytes(text)
    _count("config.json")
    with contextlib.suppress(UserError):
        inspect_model(folder)


def test_E1_kind8_property_example_counts_are_recorded() -> None:
    """Runs after the properties above (file order): how many examples each tried."""
    if not HEADER_EXAMPLES:
        pytest.skip("the property tests were not run in this session")
    print("hypothesis examples run:", HEADER_EXAMPLES)
    assert HEADER_EXAMPLES.get("raw bytes", 0) >= 1
