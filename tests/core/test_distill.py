"""Distillation: students built from a teacher, the KD losses, teacher-logit caching."""

from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.config import EncoderConfig
from slimpajama_gui.core.model.encoder import EncoderClassifier
from slimpajama_gui.core.runtime.evaluate import classification_report, predict
from slimpajama_gui.core.techniques.distill import (
    PROJECTION_ATTR,
    DistillLoss,
    cache_teacher_logits,
    default_student_layers,
    distill,
    evenly_spaced_layers,
    fits_in_memory,
    small_student,
    student_from_teacher,
)
from slimpajama_gui.core.techniques.hooks import Callbacks
from slimpajama_gui.core.techniques.train import TrainConfig, train

# The toy task of test_train.py: the label says whether "good" (7) or "bad" (8) appears.
VOCAB, GOOD, BAD, PAD_ONLY = 40, 7, 8, 39


def toy_rows(n: int, seed: int) -> list[tuple[list[int], int]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = [rng.randrange(10, VOCAB - 1) for _ in range(rng.randrange(3, 10))]
        words.insert(rng.randrange(len(words) + 1), GOOD if label else BAD)
        rows.append(([2, *words, 3], label))
    return rows


def to_batches(rows, batch_size: int, *, shuffle_seed: int | None = None, pad_id: int = 0):
    """Padded batches with ``index`` = each row's position in ``rows``, as data.batches."""
    order = list(range(len(rows)))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(order)
    for i in range(0, len(order), batch_size):
        group = order[i : i + batch_size]
        width = max(len(rows[r][0]) for r in group)
        ids = torch.full((len(group), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for b, r in enumerate(group):
            tokens = rows[r][0]
            ids[b, : len(tokens)] = torch.tensor(tokens)
            mask[b, : len(tokens)] = 1
        yield {
            "input_ids": ids,
            "attention_mask": mask,
            "token_type_ids": torch.zeros_like(ids),
            "labels": torch.tensor([rows[r][1] for r in group]),
            "index": torch.tensor(group, dtype=torch.long),
        }


def tiny_model(seed: int = 0, layers: int = 4, heads: int = 4) -> EncoderClassifier:
    torch.manual_seed(seed)
    config = EncoderConfig(
        vocab_size=VOCAB, hidden_size=32, layer_heads=[heads] * layers, head_dim=32 // heads,
        layer_ffn=[64] * layers, max_position_embeddings=32, hidden_dropout=0.0,
        attention_dropout=0.0,
    )  # fmt: skip
    return EncoderClassifier(config)


TRAIN, EVAL = toy_rows(320, seed=1), toy_rows(80, seed=2)


def eval_accuracy(model, control=None) -> dict[str, float]:
    preds = predict(model, to_batches(EVAL, 40), control=control)
    return classification_report(preds, ["neg", "pos"]).metrics()


def make_fit(lr: float = 3e-3, keep_best: bool = True):
    """The pipeline's ``fit`` in miniature: the shared loop on the toy training rows."""

    def fit(model, epochs, loss_fn=None, callbacks=()):
        config = TrainConfig(
            epochs=epochs, learning_rate=lr, batch_size=16, log_every_steps=5, warmup_ratio=0.1,
            keep_best=keep_best,
        )  # fmt: skip
        kwargs = {"loss_fn": loss_fn} if loss_fn is not None else {}
        return train(
            model, lambda e: to_batches(TRAIN, 16, shuffle_seed=e), 20, config,
            eval_fn=eval_accuracy, callbacks=list(callbacks), **kwargs,
        )  # fmt: skip

    return fit


@pytest.fixture(scope="module")
def teacher() -> EncoderClassifier:
    """A 4-layer model fine-tuned on the toy task. Read-only: tests copy what they change."""
    model = tiny_model(seed=0)
    make_fit()(model, 5)
    assert eval_accuracy(model)["accuracy"] >= 0.95
    return model.eval()


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def mean_kl(teacher, student, rows) -> float:
    """KL(teacher || student) at T=1 per example, over ``rows``."""
    total, n = 0.0, 0
    with torch.no_grad():
        for batch in to_batches(rows, 40):
            kw = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
            t = F.log_softmax(teacher(**kw).logits, -1)
            s = F.log_softmax(student(**kw).logits, -1)
            total += float(F.kl_div(s, t, log_target=True, reduction="sum"))
            n += len(batch["labels"])
    return total / n


def one_batch(n: int = 16) -> dict[str, torch.Tensor]:
    return next(to_batches(EVAL, n))


# --------------------------------------------------------------------------- students


def test_student_with_every_layer_is_the_teacher(teacher):
    student = student_from_teacher(teacher, [0, 1, 2, 3])
    batch = one_batch()
    kw = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        assert torch.equal(student(**kw).logits, teacher(**kw).logits)
    assert student.distill_layers == [0, 1, 2, 3] and student.source_path is None
    # Copies, not shared storage: training the student can never move the teacher.
    for (name, s), t in zip(student.named_parameters(), teacher.parameters(), strict=True):
        assert s.data_ptr() != t.data_ptr(), name


def test_student_with_layers_0_and_2_runs_those_teacher_layers(teacher):
    student = student_from_teacher(teacher, [0, 2])
    assert student.config.num_layers == 2 and student.distill_layers == [0, 2]
    batch = one_batch()
    with torch.no_grad():
        got = student(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        # The same computation, by hand, on the teacher's own modules.
        x = teacher.embeddings(batch["input_ids"], batch["token_type_ids"])
        keep = batch["attention_mask"][:, None, None, :].float()
        mask = (1.0 - keep) * torch.finfo(x.dtype).min
        for i in (0, 2):
            x, _ = teacher.layers[i](x, mask)
        logits = teacher.classifier(teacher.pooler(x))
    assert torch.equal(got.logits, logits)


def test_default_student_layers_are_every_second_layer():
    assert default_student_layers(6) == [1, 3, 5]
    assert default_student_layers(4) == [1, 3]
    assert default_student_layers(3) == [1]
    assert default_student_layers(1) == [0]
    six = tiny_model(layers=6)
    assert student_from_teacher(six, []).distill_layers == [1, 3, 5]
    assert evenly_spaced_layers(3, 6) == [1, 3, 5] and evenly_spaced_layers(2, 6) == [2, 5]


@pytest.mark.parametrize(
    ("layers", "problem"),
    [([4], "does not exist"), ([-1], "does not exist"), ([1, 1], "twice"),
     ([2, 0], "increasing order"), (["1"], "not a layer number")],
)  # fmt: skip
def test_bad_student_layer_is_refused_naming_the_field(teacher, layers, problem):
    with pytest.raises(UserError, match="distill.student_layers") as info:
        student_from_teacher(teacher, layers)
    assert problem in str(info.value)


def test_small_student_shapes_and_copied_embeddings(teacher):
    same_width = small_student(teacher, 2, heads=2, ffn=48, seed=0)
    cfg = same_width.config
    assert (cfg.num_layers, cfg.layer_heads, cfg.head_dim, cfg.layer_ffn) == (
        2,
        [2, 2],
        16,
        [48, 48],
    )
    for name, value in teacher.embeddings.state_dict().items():
        assert torch.equal(same_width.embeddings.state_dict()[name], value), name
    narrow = small_student(teacher, 1, hidden_size=16, seed=0)
    # Defaults keep the teacher's head width (8) and FFN ratio (2).
    assert narrow.config.layer_heads == [2] and narrow.config.layer_ffn == [32]
    assert narrow.config.num_labels == teacher.config.num_labels
    assert not hasattr(narrow, "distill_layers")
    # Seeded: the same student twice.
    again = small_student(teacher, 1, hidden_size=16, seed=0)
    assert all(
        torch.equal(a, b) for a, b in zip(narrow.parameters(), again.parameters(), strict=True)
    )
    with pytest.raises(UserError, match="not a multiple of heads"):
        small_student(teacher, 1, hidden_size=30, heads=4)
    with pytest.raises(UserError, match="num_layers"):
        small_student(teacher, 0)


# --------------------------------------------------------------------------- losses


def test_every_loss_term_is_present_finite_and_adds_up(teacher):
    # Narrower and with other head counts: exercises the projection and head averaging.
    student = small_student(teacher, 2, hidden_size=16, heads=2, seed=1)
    teacher.zero_grad(set_to_none=True)  # its own fine-tuning left gradients behind
    loss_fn = DistillLoss(
        teacher, temperature=2.0, alpha_kd=0.4, hidden_mse=0.5, attention_mse=10.0
    ).attach(student)
    assert isinstance(getattr(student, PROJECTION_ATTR), torch.nn.Linear)
    student.train()
    loss, parts = loss_fn(student, one_batch())
    assert set(parts) == {"ce", "kd", "hidden", "attention", "loss"}
    assert all(math.isfinite(v) for v in parts.values()), parts
    assert parts["kd"] > 0 and parts["hidden"] > 0 and parts["attention"] > 0
    expected = 0.6 * parts["ce"] + 0.4 * 4 * parts["kd"] + 0.5 * parts["hidden"]
    expected += 10.0 * parts["attention"]
    assert parts["loss"] == pytest.approx(expected, rel=1e-5)
    assert loss.item() == pytest.approx(parts["loss"])
    # Gradients reach the student and its projection, never the teacher.
    loss.backward()
    assert getattr(student, PROJECTION_ATTR).weight.grad is not None
    assert student.layers[0].attention.query.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())
    DistillLoss.detach(student)
    assert not any(k.startswith(PROJECTION_ATTR) for k in student.state_dict())


def test_hidden_and_attention_terms_vanish_for_a_copy_and_ignore_padding(teacher):
    student = student_from_teacher(teacher, [1, 3])
    loss_fn = DistillLoss(teacher, alpha_kd=0.5, hidden_mse=1.0, attention_mse=1.0)
    assert loss_fn.layer_map_for(student) == [1, 3]  # from the layers it was built from
    batch = one_batch()
    assert (batch["attention_mask"] == 0).any()
    # Built from the teacher's layers 1 and 3 the student's layer outputs differ from
    # theirs, but a full copy with the identity map matches everywhere.
    copy = student_from_teacher(teacher, [0, 1, 2, 3])
    _, parts = loss_fn(copy, batch)
    assert parts["hidden"] == 0.0 and parts["attention"] == 0.0 and parts["kd"] < 1e-10
    # A token that sits only in padding, with a different embedding in the student:
    # hidden states at padded positions now differ, real ones cannot (padding is masked).
    padded = dict(batch)
    padded["input_ids"] = torch.where(batch["attention_mask"] == 1, batch["input_ids"], PAD_ONLY)
    with torch.no_grad():
        copy.embeddings.word_embeddings.weight[PAD_ONLY] += 1.0
        s = copy(padded["input_ids"], padded["attention_mask"], output_hidden_states=True)
        t = teacher(padded["input_ids"], padded["attention_mask"], output_hidden_states=True)
    pad = batch["attention_mask"] == 0
    assert not torch.allclose(s.hidden_states[0][pad], t.hidden_states[0][pad])
    _, parts = loss_fn(copy, padded)
    assert parts["hidden"] == 0.0 and parts["attention"] == 0.0


def test_bad_settings_and_layer_maps_are_refused(teacher):
    with pytest.raises(UserError, match="distill.temperature"):
        DistillLoss(teacher, temperature=0)
    with pytest.raises(UserError, match="distill.alpha_kd"):
        DistillLoss(teacher, alpha_kd=1.5)
    with pytest.raises(UserError, match="distill.hidden_mse"):
        DistillLoss(teacher, hidden_mse=-1)
    student = student_from_teacher(teacher, [0, 2])
    with pytest.raises(UserError, match=r"distill.layer_map.*teacher layer 7 does not exist"):
        DistillLoss(teacher, hidden_mse=1.0, layer_map=[1, 7]).attach(student)
    with pytest.raises(UserError, match="distill.layer_map.*1 entries"):
        DistillLoss(teacher, hidden_mse=1.0, layer_map=[1]).attach(student)
    other_labels = tiny_model(layers=1)
    other_labels.classifier = torch.nn.Linear(32, 3)
    other_labels.config.num_labels = 3
    with pytest.raises(UserError, match="3 labels but the teacher 2"):
        DistillLoss(teacher).attach(other_labels)
    # A narrow student without attach() cannot silently train without its projection.
    narrow = small_student(teacher, 1, hidden_size=16, seed=0)
    with pytest.raises(RuntimeError, match="attach"):
        DistillLoss(teacher, hidden_mse=1.0)(narrow, one_batch())


def test_cached_teacher_logits_give_the_same_loss_without_the_teacher(teacher):
    cache = cache_teacher_logits(teacher, to_batches(TRAIN, 64))
    assert sorted(cache) == list(range(len(TRAIN)))
    assert cache[0].shape == (2,) and cache[0].dtype == torch.float32
    student = student_from_teacher(teacher, [1, 3])
    student.train()
    plain = DistillLoss(teacher, temperature=3.0, alpha_kd=0.7)
    cached = DistillLoss(teacher, temperature=3.0, alpha_kd=0.7, teacher_logits_cache=cache)
    for batch in list(to_batches(TRAIN, 16, shuffle_seed=4))[:3]:
        loss_a, parts_a = plain(student, batch)
        loss_b, parts_b = cached(student, batch)
        assert torch.allclose(loss_a, loss_b, rtol=1e-5, atol=1e-7), (parts_a, parts_b)
        assert parts_a.keys() == parts_b.keys() == {"ce", "kd", "loss"}
    assert cached.teacher_forwards == 0 and cached.cache_hits == 3
    assert plain.teacher_forwards == 3
    # Rows the cache does not hold, or a term that needs the teacher's states: it runs.
    batch = dict(one_batch())
    batch["index"] = batch["index"] + 10_000
    cached(student, batch)
    assert cached.teacher_forwards == 1
    with_states = DistillLoss(teacher, hidden_mse=1.0, teacher_logits_cache=cache)
    with_states(student, batch)
    assert with_states.teacher_forwards == 1 and with_states.cache_hits == 0


def test_fits_in_memory_rule():
    assert fits_in_memory(67_349, 2)  # SST-2 train
    assert fits_in_memory(500_000, 2)
    assert not fits_in_memory(600_000, 2)
    assert not fits_in_memory(10_000_000, 2)


# --------------------------------------------------------------------------- training


class Logs(Callbacks):
    def __init__(self) -> None:
        self.logs: list[dict] = []

    def on_log(self, state, metrics) -> None:
        self.logs.append(metrics)


def test_kd_lowers_the_kl_reaches_teacher_accuracy_and_leaves_the_teacher(teacher):
    before = snapshot(teacher)
    teacher_acc = eval_accuracy(teacher)["accuracy"]
    student = small_student(teacher, 1, hidden_size=16, seed=0)
    kl_before = mean_kl(teacher, student, EVAL)
    forwards = []
    hook = teacher.register_forward_hook(lambda *a: forwards.append(1))
    logs = Logs()
    try:
        result = distill(
            # keep_best=False: the toy accuracy hits 1.0 in epoch 1, and "best" would
            # then roll back to those early weights, hiding what KD did afterwards.
            student, teacher, make_fit(keep_best=False), temperature=2.0, alpha_kd=0.7, epochs=6,
            train_batches_for_cache=to_batches(TRAIN, 64), callbacks=[logs],
        )  # fmt: skip
    finally:
        hook.remove()
    assert result.status == "done" and result.steps == 120
    # The teacher ran once per cache batch (5 x 64 rows) and never during training.
    assert len(forwards) == 5
    kl_after = mean_kl(teacher, student, EVAL)
    student_acc = eval_accuracy(student)["accuracy"]
    # Measured: 0.54 -> 0.0004 (seeds 0-3 of the student: all below 0.001).
    assert kl_after < 0.1 * kl_before, (kl_before, kl_after)
    assert student_acc >= 0.9 * teacher_acc, (teacher_acc, student_acc)
    assert {"ce", "kd", "loss"} <= set(logs.logs[-1])
    assert logs.logs[-1]["kd"] < logs.logs[0]["kd"]
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert not teacher.training


def test_distill_with_hidden_terms_trains_and_removes_the_projection(teacher):
    before = snapshot(teacher)
    student = small_student(teacher, 2, hidden_size=16, seed=2)
    seen = []

    def fit(model, epochs, loss_fn=None, callbacks=()):
        # The projection exists while training, so the optimizer sees it.
        seen.append(any(n.startswith(PROJECTION_ATTR) for n, _ in model.named_parameters()))
        config = TrainConfig(epochs=epochs, learning_rate=3e-3, batch_size=16, max_steps=8)
        return train(
            model, lambda e: to_batches(TRAIN, 16, shuffle_seed=e), 20, config,
            loss_fn=loss_fn, callbacks=list(callbacks),
        )  # fmt: skip

    logs = Logs()
    result = distill(
        student, teacher, fit, hidden_mse=1.0, attention_mse=10.0, epochs=1,
        train_batches_for_cache=to_batches(TRAIN, 64), callbacks=[logs],
    )  # fmt: skip
    assert result.status == "done" and seen == [True]
    assert not any(k.startswith(PROJECTION_ATTR) for k in student.state_dict())
    assert {"ce", "kd", "hidden", "attention", "loss"} <= set(logs.logs[-1])
    assert all(math.isfinite(v) for v in logs.logs[-1].values())
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, before[name]), name
