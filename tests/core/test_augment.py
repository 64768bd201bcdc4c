"""Distillation on augmented rows: words swapped for near neighbours, labelled by the teacher."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoTokenizer

from slimpajama_gui.core.data.dataset import DatasetSpec, load_dataset
from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.catalog import packaged_minilm_path
from slimpajama_gui.core.plan.recipe import RecipeError, step_from_dict
from slimpajama_gui.core.runtime.loading import open_model
from slimpajama_gui.core.techniques.distill import DistillLoss
from slimpajama_gui.core.techniques.distill import augment as augment_mod
from tests.core.test_distill_cache import DISTILL, cache_files, distill_job, write_demo


@pytest.fixture(scope="module")
def minilm():
    """The packaged MiniLM's tokenizer and word-embedding table (30,522 x 384)."""
    path = packaged_minilm_path()
    table = open_model(path).load_model().embeddings.word_embeddings.weight.detach()
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True), table


def test_neighbours_are_near_synonyms_and_never_the_word_itself(minilm):
    tokenizer, table = minilm
    words, continues = augment_mod.whole_word_ids(tokenizer)
    ids = tokenizer.convert_tokens_to_ids(["wonderful", "terrible", "##less", "[CLS]", "7"])
    table_of = augment_mod.neighbour_table(table, words, ids, k=8)
    assert set(table_of) == set(ids[:2])  # pieces, special tokens and digits never swap
    near = {tokenizer.convert_ids_to_tokens(i): tokenizer.convert_ids_to_tokens(n)
            for i, n in table_of.items()}  # fmt: skip
    assert len(near["wonderful"]) == 8 and "wonderful" not in near["wonderful"]
    assert {"fantastic", "terrific"} <= set(near["wonderful"])
    assert {"horrible", "awful"} <= set(near["terrible"])
    assert tokenizer.convert_tokens_to_ids("##less") in continues


def test_copies_keep_length_and_word_pieces_and_repeat_with_the_seed(minilm):
    tokenizer, table = minilm
    words, continues = augment_mod.whole_word_ids(tokenizer)
    rows = tokenizer(["the waiter was unbelievably rude and the soup tasteless"])["input_ids"]
    near = augment_mod.neighbour_table(table, words, set(rows[0]))
    copies = augment_mod.augment_rows(rows, near, continues, rate=1.0, copies=2, seed=3)
    assert len(copies) == 2 and all(len(c) == len(rows[0]) for c in copies)
    pieces = tokenizer.convert_ids_to_tokens(rows[0])
    for copy in copies:
        for n, (old, new) in enumerate(zip(rows[0], copy, strict=True)):
            starts_a_longer_word = n + 1 < len(pieces) and pieces[n + 1].startswith("##")
            if (
                pieces[n] in ("[CLS]", "[SEP]")
                or pieces[n].startswith("##")
                or starts_a_longer_word
            ):
                assert new == old, pieces[n]  # "un" of un##bel..., "taste" of taste##less
            else:
                assert new in near[old]  # rate 1: every whole word is swapped
    assert copies == augment_mod.augment_rows(rows, near, continues, rate=1.0, copies=2, seed=3)
    assert copies != augment_mod.augment_rows(rows, near, continues, rate=1.0, copies=2, seed=4)
    assert augment_mod.augment_rows(rows, near, continues, rate=0.0) == rows


def test_augmented_rows_take_the_teachers_argmax_as_their_label():
    class Fixed(torch.nn.Module):
        config = type("C", (), {"num_labels": 2, "hidden_size": 4})()

    teacher_logits = torch.tensor([[3.0, -3.0], [3.0, -3.0], [-3.0, 3.0]])  # says 0, 0, 1
    student = torch.tensor([[0.0, 2.0], [0.0, 2.0], [0.0, 2.0]])
    batch = {"index": torch.tensor([0, 5, 6]), "labels": torch.tensor([1, 1, 1])}
    loss = DistillLoss(Fixed(), alpha_kd=0.5, teacher_labels_from=5)
    # Rows 5 and 6 are copies: their labels become the teacher's 0 and 1; row 0 keeps its 1.
    labels = torch.where(batch["index"] >= 5, teacher_logits.argmax(-1), batch["labels"])
    assert labels.tolist() == [1, 0, 1]
    loss.teacher_logits_cache = torch.cat([teacher_logits[:1].repeat(5, 1), teacher_logits[1:]])

    class Student(torch.nn.Module):
        config = Fixed.config

        def forward(self, **_):
            return type("O", (), {"logits": student})()

    batch["input_ids"] = torch.ones(3, 4, dtype=torch.long)
    _, parts = loss(Student(), batch)
    expected = torch.nn.functional.cross_entropy(student, torch.tensor([1, 0, 1]))
    assert parts["ce"] == pytest.approx(float(expected))
    with pytest.raises(UserError, match="alpha_kd"):
        DistillLoss(Fixed(), alpha_kd=0.0, teacher_labels_from=5)


def test_a_distill_step_with_augment_trains_on_twice_the_rows_and_caches_them(
    tiny_minilm, tmp_path
):
    data = write_demo(tmp_path / "data")
    steps = DISTILL.replace("alpha_kd: 0.7}", "alpha_kd: 0.7, augment: 1}")
    record, _ = distill_job(tiny_minilm, data, tmp_path / "a", steps)
    plain, _ = distill_job(tiny_minilm, data, tmp_path / "b")
    rows = len(load_dataset(DatasetSpec()).train)
    assert record.distill["augmented_rows"] == rows
    assert plain.metrics["training"]["train_steps"] == math.ceil(rows / 16)
    assert record.metrics["training"]["train_steps"] == math.ceil(2 * rows / 16)
    assert plain.distill["augmented_rows"] == 0
    assert len(cache_files()) == 2  # the augmented rows' logits are their own cache file
    again, _ = distill_job(tiny_minilm, data, tmp_path / "c", steps)
    assert again.distill["teacher_logits"] == "read from disk"  # same seed, same copies


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"augment": 1, "alpha_kd": 0.0}, "alpha_kd above 0 or augment to 0"),
        ({"augment": -1}, "must be 0 or more"),
        ({"augment": 1, "augment_rate": 0.0}, "above 0"),
        ({"augment": 11}, "augment"),
    ],
)
def test_bad_augment_settings_name_the_field(fields, words):
    with pytest.raises(RecipeError, match=words):
        step_from_dict({"type": "distill", **fields}, index=0).validate()
