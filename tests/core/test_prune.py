"""Pruning: magnitude (one-shot, gradual), structured heads/FFN, layers."""

from __future__ import annotations

import copy
import json
import random

import pytest
import torch

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.config import EncoderConfig
from slimpajama_gui.core.model.encoder import EncoderClassifier, count_parameters
from slimpajama_gui.core.techniques.hooks import Callbacks
from slimpajama_gui.core.techniques.prune import (
    GradualMagnitudePruner,
    Importance,
    StructureMasks,
    cubic_sparsity,
    drop_layers,
    layers,
    magnitude,
    magnitude_prune,
    make_permanent,
    masked_structure,
    prune_structure,
    safetensors_sizes,
    select_structure,
    sparsity_report,
    structure_importance,
)
from slimpajama_gui.core.techniques.train import TrainConfig, train

VOCAB, GOOD, BAD = 40, 7, 8


def tiny_model(seed: int = 0, **overrides) -> EncoderClassifier:
    torch.manual_seed(seed)
    base = dict(
        vocab_size=VOCAB, hidden_size=32, layer_heads=[4, 4, 4], head_dim=8,
        layer_ffn=[64, 64, 64], max_position_embeddings=32, hidden_dropout=0.0,
        attention_dropout=0.0,
    )  # fmt: skip
    base.update(overrides)
    return EncoderClassifier(EncoderConfig(**base)).eval()


def toy_batches(n: int = 64, batch_size: int = 16, seed: int = 0):
    """Batches of a learnable toy task ("good" id 7 vs "bad" id 8), with padding."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [rng.randrange(10, VOCAB) for _ in range(rng.randrange(3, 10))]
        words.insert(rng.randrange(len(words) + 1), GOOD if i % 2 else BAD)
        rows.append(([2, *words, 3], i % 2))
    out = []
    for i in range(0, n, batch_size):
        chunk = rows[i : i + batch_size]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, (tokens, _) in enumerate(chunk):
            ids[r, : len(tokens)] = torch.tensor(tokens)
            mask[r, : len(tokens)] = 1
        out.append(
            {
                "input_ids": ids,
                "attention_mask": mask,
                "token_type_ids": torch.zeros_like(ids),
                "labels": torch.tensor([label for _, label in chunk]),
            }
        )
    return out


def logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).logits


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- magnitude


def test_magnitude_global_prunes_exact_share_and_reports_per_layer():
    model = tiny_model()
    report = magnitude_prune(model, 0.5)
    total = sum(m.weight.numel() for m in magnitude.prunable_linears(model).values())
    assert report.total == total
    assert report.nonzero == total - round(0.5 * total)
    assert report.overall == pytest.approx(0.5, abs=1e-4)
    assert set(report.per_layer) == {"layer 0", "layer 1", "layer 2"}
    assert "layers.0.attention.query" in report.per_module
    assert "classifier" not in report.per_module
    assert "compressed" in report.note and "no faster" in report.note
    # global scope: layers end up with different sparsity
    assert len({round(v, 3) for v in report.per_module.values()}) > 1
    # embeddings, biases, head untouched
    assert torch.count_nonzero(model.classifier.weight) == model.classifier.weight.numel()
    assert torch.count_nonzero(model.embeddings.word_embeddings.weight) > 0


def test_magnitude_layer_scope_prunes_every_linear_equally():
    model = tiny_model()
    report = magnitude_prune(model, 0.3, scope="layer", include_classifier=True)
    for name, value in report.per_module.items():
        n = dict(model.named_modules())[name].weight.numel()
        assert value == pytest.approx(round(0.3 * n) / n), name
    assert "classifier" in report.per_module and "head" in report.per_layer


def test_magnitude_pruning_again_only_grows_the_masks():
    model = tiny_model()
    magnitude_prune(model, 0.5)
    first = {n: m.weight_mask.clone() for n, m in magnitude.prunable_linears(model).items()}
    report = magnitude_prune(model, 0.8)
    assert report.overall == pytest.approx(0.8, abs=1e-4)
    for name, linear in magnitude.prunable_linears(model).items():
        assert not (linear.weight_mask.bool() & ~first[name].bool()).any()


@pytest.mark.parametrize("amount", [0, 1, -0.1, 1.5, float("nan"), "half", True, None])
def test_magnitude_refuses_bad_amount_and_leaves_model_alone(amount):
    model = tiny_model()
    before = weights(model)
    with pytest.raises(UserError, match=r"prune\.amount"):
        magnitude_prune(model, amount)
    assert not torch.nn.utils.prune.is_pruned(model)
    assert weights(model).keys() == before.keys()
    with pytest.raises(UserError, match=r"prune\.scope"):
        magnitude_prune(model, 0.5, scope="model")


def test_magnitude_rolls_back_when_applying_fails(monkeypatch):
    model = tiny_model()
    magnitude_prune(model, 0.2)  # some modules already pruned: their old masks must survive
    before = {k: v.clone() for k, v in layers._plain_state_dict(model).items()}
    masks_before = {n: m.weight_mask.clone() for n, m in magnitude.prunable_linears(model).items()}
    calls = {"n": 0}
    original = magnitude._refresh

    def flaky(linear):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("simulated failure half-way")
        original(linear)

    monkeypatch.setattr(magnitude, "_refresh", flaky)
    with pytest.raises(RuntimeError, match="half-way"):
        magnitude_prune(model, 0.9)
    monkeypatch.setattr(magnitude, "_refresh", original)
    after = layers._plain_state_dict(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    for name, linear in magnitude.prunable_linears(model).items():
        assert torch.equal(linear.weight_mask, masks_before[name])
    assert sparsity_report(model).overall == pytest.approx(0.2, abs=1e-4)

    fresh = tiny_model()
    plain = weights(fresh)
    calls["n"] = 0
    monkeypatch.setattr(magnitude, "_refresh", flaky)
    with pytest.raises(RuntimeError):
        magnitude_prune(fresh, 0.9)
    assert not torch.nn.utils.prune.is_pruned(fresh)
    assert all(torch.equal(plain[k], v) for k, v in fresh.state_dict().items())


def test_masked_model_trains_through_masks_and_can_be_cloned():
    model = tiny_model()
    magnitude_prune(model, 0.5)
    batch = toy_batches()[0]
    model.train()
    model(batch["input_ids"], batch["attention_mask"]).logits.sum().backward()
    query = model.layers[0].attention.query
    assert query.weight_orig.grad is not None
    assert (query.weight_orig.grad[query.weight_mask == 0] == 0).all()
    assert (query.weight_orig.grad != 0).any()
    clone = copy.deepcopy(model)  # the pipeline clones models between steps
    torch.testing.assert_close(logits(clone.eval(), batch), logits(model.eval(), batch))
    make_permanent(clone)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in clone.modules())


def test_recovery_training_keeps_zeros_and_permanent_model_saves_plain(tmp_path):
    model = tiny_model()
    batch = toy_batches()[0]
    magnitude_prune(model, 0.6)
    zero_before = {n: m.weight_mask == 0 for n, m in magnitude.prunable_linears(model).items()}
    train(
        model,
        lambda epoch: toy_batches(seed=epoch),
        4,
        TrainConfig(epochs=2, learning_rate=1e-2, log_every_steps=1, device="cpu"),
    )
    for name, linear in magnitude.prunable_linears(model).items():
        assert (linear.weight[zero_before[name]] == 0).all(), name
    masked_logits = logits(model, batch)
    make_permanent(model)
    assert not torch.nn.utils.prune.is_pruned(model)
    keys = set(model.state_dict())
    assert keys == set(tiny_model().state_dict())
    assert not any(k.endswith(("_orig", "_mask")) for k in keys)
    assert sparsity_report(model).overall == pytest.approx(0.6, abs=1e-4)
    torch.testing.assert_close(logits(model, batch), masked_logits)
    loaded = EncoderClassifier.from_pretrained(model.save_pretrained(tmp_path / "pruned"))
    torch.testing.assert_close(logits(loaded, batch), masked_logits)
    assert make_permanent(loaded) is loaded  # no masks: a no-op


def test_unstructured_sparsity_shrinks_only_the_zipped_file():
    model = tiny_model(hidden_size=64, layer_heads=[8, 8], layer_ffn=[256, 256])
    raw_dense, zip_dense = safetensors_sizes(model)
    sizes = {}
    for amount in (0.5, 0.9):
        pruned = tiny_model(hidden_size=64, layer_heads=[8, 8], layer_ffn=[256, 256])
        magnitude_prune(pruned, amount)
        make_permanent(pruned)
        sizes[amount] = safetensors_sizes(pruned)
    print(f"dense raw {raw_dense} zipped {zip_dense}; pruned {sizes}")
    for raw, _ in sizes.values():
        assert raw == raw_dense  # same tensors, same shapes: the file does not shrink
    assert sizes[0.9][1] < sizes[0.5][1] < zip_dense
    assert sizes[0.9][1] < 0.5 * zip_dense


# --------------------------------------------------------------------------- gradual


def test_cubic_schedule_matches_zhu_and_gupta():
    assert cubic_sparsity(0, 0.8, 10, 110) == 0.0
    assert cubic_sparsity(10, 0.8, 10, 110) == pytest.approx(0.0)
    assert cubic_sparsity(60, 0.8, 10, 110) == pytest.approx(0.8 - 0.8 * 0.5**3)
    assert cubic_sparsity(110, 0.8, 10, 110) == 0.8
    assert cubic_sparsity(500, 0.8, 10, 110) == 0.8
    assert cubic_sparsity(60, 0.8, 10, 110, initial=0.2) == pytest.approx(0.8 - 0.6 * 0.125)
    values = [cubic_sparsity(t, 0.9, 0, 100) for t in range(0, 101, 10)]
    assert values == sorted(values)
    assert values[1] - values[0] > values[-1] - values[-2]  # fast first, slow at the end


class ZeroWatcher(Callbacks):
    """Checks after every step that once-pruned weights stay zero."""

    def __init__(self, model):
        self.model, self.zeros, self.sparsity = model, None, []

    def on_step_end(self, state):
        linears = magnitude.prunable_linears(self.model)
        now = {n: m.weight == 0 for n, m in linears.items()}
        if self.zeros is not None:
            for name, was in self.zeros.items():
                assert now[name][was].all(), f"{name} revived a pruned weight at {state.step}"
        self.zeros = now
        self.sparsity.append(sparsity_report(self.model).overall)


def test_gradual_pruner_follows_schedule_and_keeps_pruned_weights_zero(tmp_path):
    model = tiny_model()
    pruner = GradualMagnitudePruner(model, 0.8, "global", start_step=2, end_step=12, every=2)
    watcher = ZeroWatcher(model)
    result = train(
        model,
        lambda epoch: toy_batches(seed=epoch),
        4,
        TrainConfig(epochs=4, learning_rate=1e-2, log_every_steps=1, device="cpu"),
        callbacks=[pruner, watcher],
    )
    assert result.status == "done" and result.steps == 16
    # s(t0) is the initial sparsity (0), so the first mask that prunes comes at t0 + every
    assert [s for s, _ in pruner.history] == [4, 6, 8, 10, 12]
    for step, amount in pruner.history:
        assert amount == pytest.approx(cubic_sparsity(step, 0.8, 2, 12))
        assert watcher.sparsity[step - 1] == pytest.approx(amount, abs=1e-3)
    assert watcher.sparsity[0] == 0.0 and watcher.sparsity[-1] == pytest.approx(0.8, abs=1e-3)
    make_permanent(model)
    assert sparsity_report(model).overall == pytest.approx(0.8, abs=1e-3)
    assert not any(k.endswith(("_orig", "_mask")) for k in model.state_dict())


def test_gradual_pruner_reaches_final_amount_even_when_best_weights_are_early():
    model = tiny_model()
    pruner = GradualMagnitudePruner(model, 0.7, "layer", start_step=0, end_step=8, every=1)
    scores = iter([0.9, 0.1, 0.1, 0.1])  # the best evaluation comes first, at 30 % or so

    def eval_fn(m, control):
        return {"accuracy": next(scores)}

    train(
        model,
        lambda epoch: toy_batches(seed=epoch),
        4,
        TrainConfig(epochs=3, learning_rate=1e-2, eval_every_steps=3, device="cpu"),
        eval_fn=eval_fn,
        callbacks=pruner,
    )
    report = sparsity_report(model)
    assert report.overall == pytest.approx(0.7, abs=1e-3)


def test_gradual_pruner_defaults_and_validation():
    with pytest.raises(UserError, match=r"prune\.amount"):
        GradualMagnitudePruner(tiny_model(), 1.0)
    with pytest.raises(UserError, match=r"prune\.end_step"):
        GradualMagnitudePruner(tiny_model(), 0.5, start_step=10, end_step=5)
    with pytest.raises(UserError, match=r"prune\.every"):
        GradualMagnitudePruner(tiny_model(), 0.5, every=0)
    model = tiny_model()
    pruner = GradualMagnitudePruner(model, 0.5)
    assert torch.nn.utils.prune.is_pruned(model)  # masks from the start, all ones
    assert sparsity_report(model).overall == 0.0
    train(
        model,
        lambda epoch: toy_batches(seed=epoch),
        4,
        TrainConfig(epochs=2, learning_rate=1e-2, device="cpu"),
        callbacks=pruner,
    )
    assert pruner.end_step == 6 and pruner.every == 1  # 3/4 of 8 steps, 16 updates at most
    assert sparsity_report(model).overall == pytest.approx(0.5, abs=1e-3)


# --------------------------------------------------------------------------- structured


def test_structure_importance_reads_only_and_finds_a_dead_head():
    model = tiny_model()
    with torch.no_grad():  # head 2 of layer 0 outputs nothing: its importance must be 0
        model.layers[0].attention.output.weight[:, 16:24] = 0
        model.layers[1].ffn.output.weight[:, 5] = 0
    model.train()
    before = weights(model)
    imp = structure_importance(model, iter(toy_batches()), max_batches=2)
    assert model.training
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert imp.examples == 32
    assert [t.shape for t in imp.heads] == [torch.Size([4])] * 3
    assert [t.shape for t in imp.ffn] == [torch.Size([64])] * 3
    assert all((t >= 0).all() for t in imp.heads + imp.ffn)
    assert imp.heads[0][2] == 0 and (imp.heads[0][[0, 1, 3]] > 0).all()
    assert imp.ffn[1][5] == 0
    masks = select_structure(model, imp, head_fraction=1 / 12, scope="global")
    assert masks.layer_heads == [3, 4, 4] and not masks.heads[0][2]
    json.dumps(imp.to_dict())
    with pytest.raises(UserError, match="batches"):
        structure_importance(model, [])


def test_prune_structure_matches_masked_original_and_round_trips(tmp_path):
    model = tiny_model()
    batches = toy_batches()
    imp = structure_importance(model, batches, max_batches=4)
    small = prune_structure(model, imp, head_fraction=0.5, ffn_fraction=0.5, scope="global")
    masks = select_structure(model, imp, head_fraction=0.5, ffn_fraction=0.5, scope="global")
    assert small.config.layer_heads == masks.layer_heads and sum(masks.layer_heads) == 6
    assert small.config.layer_ffn == masks.layer_ffn and sum(masks.layer_ffn) == 96
    assert model.config.layer_heads == [4, 4, 4]  # the original is untouched
    assert count_parameters(small) < count_parameters(model)
    for batch in batches:
        with masked_structure(model, masks):
            expected = logits(model, batch)
        torch.testing.assert_close(logits(small, batch), expected, rtol=0, atol=1e-6)
    assert not (logits(model, batches[0]) == expected).all()  # hooks are gone again
    loaded = EncoderClassifier.from_pretrained(small.save_pretrained(tmp_path / "small"))
    assert loaded.config.layer_heads == small.config.layer_heads
    torch.testing.assert_close(logits(loaded, batches[0]), logits(small, batches[0]))


def test_prune_structure_layer_scope_minimums_and_removed_branches():
    model = tiny_model()
    imp = Importance(
        heads=[torch.rand(4) for _ in range(3)], ffn=[torch.rand(64) for _ in range(3)]
    )
    small = prune_structure(model, imp, head_fraction=0.5, ffn_fraction=0.25, scope="layer")
    assert small.config.layer_heads == [2, 2, 2] and small.config.layer_ffn == [48, 48, 48]
    kept = prune_structure(model, imp, head_fraction=1.0, ffn_fraction=1.0)
    assert kept.config.layer_heads == [1, 1, 1] and kept.config.layer_ffn == [1, 1, 1]
    gone = prune_structure(model, imp, 1.0, 1.0, min_heads_per_layer=0, min_ffn_per_layer=0)
    assert gone.config.layer_heads == [0, 0, 0] and gone.config.layer_ffn == [0, 0, 0]
    batch = toy_batches()[0]
    masks = StructureMasks(
        heads=[torch.zeros(4, dtype=torch.bool)] * 3, ffn=[torch.zeros(64, dtype=torch.bool)] * 3
    )
    with masked_structure(model, masks):
        torch.testing.assert_close(logits(gone, batch), logits(model, batch), rtol=0, atol=1e-6)
    with pytest.raises(UserError, match=r"prune\.amount"):
        prune_structure(model, imp, head_fraction=1.5)
    with pytest.raises(UserError, match="compute them again"):
        prune_structure(small, imp, head_fraction=0.5)


def test_structured_pruning_of_a_magnitude_pruned_model_keeps_its_zeros():
    model = tiny_model()
    magnitude_prune(model, 0.5)
    imp = structure_importance(model, toy_batches(), max_batches=1)
    small = prune_structure(model, imp, head_fraction=0.25, ffn_fraction=0.25)
    assert not torch.nn.utils.prune.is_pruned(small)
    assert sparsity_report(small).overall > 0.4


# --------------------------------------------------------------------------- layers


def test_drop_layers_copies_the_kept_layers():
    model = tiny_model(layer_heads=[4, 2, 3], layer_ffn=[64, 32, 16])
    small = drop_layers(model, [0, 2])
    assert small.config.layer_heads == [4, 3] and small.config.layer_ffn == [64, 16]
    assert model.config.num_layers == 3
    old, new = model.state_dict(), small.state_dict()
    for key, value in new.items():
        source = key.replace("layers.1.", "layers.2.") if key.startswith("layers.1.") else key
        assert torch.equal(value, old[source]), key
    batch = toy_batches()[0]
    # Running the original with layer 1 skipped gives the same logits.
    skipped = tiny_model(layer_heads=[4, 2, 3], layer_ffn=[64, 32, 16])
    skipped.layers[1].forward = lambda x, mask, need_weights=False: (x, None)
    torch.testing.assert_close(logits(small, batch), logits(skipped, batch))


@pytest.mark.parametrize("keep", [[], [3], [-1], [1, 1], [2, 0], [True], "01", 2, [0.5]])
def test_drop_layers_refuses_bad_lists(keep):
    with pytest.raises(UserError, match=r"prune\.keep_layers"):
        drop_layers(tiny_model(), keep)
