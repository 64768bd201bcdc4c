"""Several processes under torchrun (gloo, CPU): the same recipe, the same result.

The must-show tests start ``torchrun --standalone --nproc_per_node=2 -m
slimpajama_gui.cli run RECIPE`` as a subprocess on a tiny teacher written as a real model
folder, and compare with the same recipe run in one process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.jobs.pipeline import run
from slimpajama_gui.core.plan.recipe import load_recipe
from slimpajama_gui.core.runtime.predictor import ModelPredictor
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.core.storage.variant import VariantRecord
from slimpajama_gui.core.techniques import distributed
from slimpajama_gui.core.techniques.hooks import Control
from slimpajama_gui.core.techniques.train import NonFiniteLoss, TrainConfig, pick_device, train
from tests.conftest import REPO

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
#: Logits of the students trained in one process and in two may differ by this much:
#: both see the same global batches in the same order with the same weights (no
#: dropout in the tiny teacher), and DDP averages the two halves' gradients, each
#: weighted by its share of the batch, which is the global batch's mean gradient.
#: What remains is float32 rounding: the sum of the halves is taken in another order
#: (observed: weights within 2e-7 after 56 AdamW steps).
LOGIT_TOLERANCE = 1e-4


def _recipe(folder: Path, teacher: Path, output: Path, *, epochs: float, then: str = "") -> Path:
    path = folder / f"{output.name}.yaml"
    path.write_text(
        f"""name: {output.name}
model: {teacher}
dataset:
  train: demo
  labels: [negative, positive]
  max_length: 48
output: {output}
device: cpu
seed: 3
steps:
  - {{type: distill, student_layers: [1], epochs: {epochs}, learning_rate: 1.0e-3, batch_size: 16}}
{then}""",
        encoding="utf-8",
    )
    return path


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("SLIMPAJAMA_MAX_TRAIN_STEPS", None)
    return env


def _dev_texts() -> list[str]:
    rows = (REPO / "resources" / "demo" / "dev.tsv").read_text(encoding="utf-8").splitlines()
    return [line.split("\t")[0] for line in rows[1:41]]


# --------------------------------------------------------------------------- units


def test_shards_of_a_batch_cover_it_once_and_weigh_to_its_mean():
    batch = {
        "input_ids": torch.arange(5 * 6).reshape(5, 6),
        "attention_mask": torch.tensor([[1] * 2 + [0] * 4] * 4 + [[1] * 6]),
        "labels": torch.arange(5),
        "index": torch.arange(10, 15),
    }
    shards = [distributed.shard_batch(batch, distributed.Group(r, 2, r, "gloo")) for r in (0, 1)]
    assert torch.cat([s["index"] for s in shards]).tolist() == [10, 11, 12, 13, 14]
    assert [int(s["rows"]) for s in shards] == [2, 3]
    # mean over ranks of (weight * local mean) == global mean
    per_row = batch["labels"].float()
    local = [per_row[:2].mean(), per_row[2:].mean()]
    mixed = sum(float(s["loss_weight"]) * m for s, m in zip(shards, local, strict=True)) / 2
    assert mixed == pytest.approx(float(per_row.mean()))
    assert shards[0]["input_ids"].shape[1] == 2  # padding nobody in the slice uses is cut


def test_a_rank_without_rows_gets_a_weightless_row():
    batch = {"input_ids": torch.ones(1, 3, dtype=torch.long), "labels": torch.zeros(1)}
    shards = [distributed.shard_batch(batch, distributed.Group(r, 2, r, "gloo")) for r in (0, 1)]
    assert [int(s["rows"]) for s in shards] == [0, 1]
    assert [float(s["loss_weight"]) for s in shards] == [0.0, 2.0]
    assert shards[0]["input_ids"].shape[0] == 1  # DDP needs a forward on every rank


def test_cuda_on_a_machine_without_it_names_the_device_field(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match=r"device: cuda .*'device: cpu'"):
        pick_device("cuda")
    assert pick_device("auto").type == "cpu"


def test_bad_torchrun_variables_are_named(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(UserError, match="WORLD_SIZE='two'"):
        distributed.launched()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not distributed.launched()  # torchrun with one process: just one process


def test_alone_a_control_agrees_with_itself():
    control = Control()
    control.sync_with_ranks(False)
    assert control.agree(False) == (False, False)
    control.request_stop()
    assert control.agree(torch.tensor(True)) == (True, True)


# --------------------------------------------------------------------------- torchrun


@pytest.mark.slow
def test_torchrun_two_processes_match_one(tiny_minilm, tmp_path):
    """Must show: one artifact folder, one history row, the same student as one process."""
    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_minilm, teacher)
    # The evaluate step runs on rank 0 alone, after rank 1 has ended.
    then = "  - {type: evaluate}\n"
    one = load_recipe(_recipe(tmp_path, teacher, tmp_path / "one", epochs=2, then=then))
    with JobStore() as store:
        single = run(one, store=store)
    assert single.status == "done", single.error

    recipe = _recipe(tmp_path, teacher, tmp_path / "two", epochs=2, then=then)
    done = subprocess.run(
        [*TORCHRUN, "-m", "slimpajama_gui.cli", "run", str(recipe)],
        env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "trains on 2 processes (torchrun, gloo)" in done.stdout

    out = tmp_path / "two"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["01-distill"]
    with JobStore() as store:
        jobs = store.list_jobs()
        assert [j.status for j in jobs if j.output == str(out)] == ["done"]
        assert len(jobs) == 2  # the single-process job and this one: no row from rank 1
        assert len(store.variants(jobs[0].id if jobs[0].output == str(out) else jobs[1].id)) == 1

    a = VariantRecord.read(tmp_path / "one" / "01-distill")
    b = VariantRecord.read(out / "01-distill")
    assert b.metrics["training"]["trained_on"] == {
        "device": "cpu", "precision": "fp32", "processes": 2,
    }  # fmt: skip
    assert b.metrics["training"]["eval_accuracy"] == a.metrics["training"]["eval_accuracy"]
    assert b.metrics["training"]["train_steps"] == a.metrics["training"]["train_steps"]
    assert b.metrics["eval"]["confusion"] == a.metrics["eval"]["confusion"]
    assert b.metrics["eval"]["accuracy"] == a.metrics["eval"]["accuracy"]
    texts = _dev_texts()
    p1 = ModelPredictor(tmp_path / "one" / "01-distill").scores(texts).probs
    p2 = ModelPredictor(out / "01-distill").scores(texts).probs
    assert np.abs(p1 - p2).max() < LOGIT_TOLERANCE
    assert (p1.argmax(1) == p2.argmax(1)).all()


def _workers(parent: int) -> dict[int, int]:
    """rank -> pid of the processes torchrun (``parent``) started (Linux /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        for item in env:
            if item.startswith(b"RANK="):
                found[int(item[5:])] = int(entry.name)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the ranks in /proc")
def test_sigterm_to_rank_0_stops_both_ranks(tiny_minilm, tmp_path):
    """Must show: a stop on one rank stops every rank; the job is recorded as cancelled
    and leaves no variant folder."""
    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_minilm, teacher)
    out = tmp_path / "long"
    recipe = _recipe(tmp_path, teacher, out, epochs=400)  # far longer than the test
    log = (tmp_path / "torchrun.log").open("w")
    proc = subprocess.Popen(
        [*TORCHRUN, "-m", "slimpajama_gui.cli", "run", str(recipe)],
        env=_env(), cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        # Wait until training logged a metric row: both ranks are in the loop.
        deadline = time.monotonic() + 240
        training = False
        while time.monotonic() < deadline and proc.poll() is None and not training:
            time.sleep(1)
            with JobStore() as store:
                jobs = store.list_jobs()
                training = bool(jobs) and bool(store.metrics(jobs[0].id))
        assert training, (tmp_path / "torchrun.log").read_text()[-3000:]
        ranks = _workers(proc.pid)
        assert sorted(ranks) == [0, 1]
        os.kill(ranks[0], signal.SIGTERM)  # rank 0 only: rank 1 learns it by all-reduce
        stopped = time.monotonic()
        while time.monotonic() - stopped < 60 and any(_alive(p) for p in ranks.values()):
            time.sleep(0.2)
        assert not any(_alive(p) for p in ranks.values()), "a rank kept running"
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    text = (tmp_path / "torchrun.log").read_text()
    with JobStore() as store:
        jobs = store.list_jobs()
    assert [j.status for j in jobs] == ["cancelled"], text[-3000:]
    assert not (out / "01-distill").exists()
    leftovers = [p.name for p in out.iterdir()] if out.exists() else []
    assert not [n for n in leftovers if "distill" in n], leftovers


def test_torchrun_commands_for_one_machine_and_several():
    from slimpajama_gui.core.plan.launch import torchrun_commands

    assert torchrun_commands("/r/a b.yaml", processes=2) == [
        "torchrun --standalone --nproc_per_node=2 -m slimpajama_gui.cli run '/r/a b.yaml'"
    ]
    lines = torchrun_commands("r.yaml", processes=8, nodes=3, host="h", port=1234, job="j")
    assert [line.split()[3] for line in lines] == [f"--node_rank={k}" for k in range(3)]
    assert all("--rdzv_endpoint=h:1234 --rdzv_id=j" in line for line in lines)
    with pytest.raises(ValueError, match="host name"):
        torchrun_commands("r.yaml", processes=1, nodes=2)


# --------------------------------------------------------------------------- deferred checks
# On a GPU the loop reads the loss back every log_every_steps steps; the same code runs
# on the CPU when check_every_steps asks for it.


def test_checking_the_loss_every_few_steps_trains_the_same_weights():
    from tests.core.test_train import TRAIN, tiny_model, to_batches

    def weights(check_every: int) -> torch.Tensor:
        model = tiny_model(seed=3)
        config = TrainConfig(
            epochs=1, learning_rate=1e-3, batch_size=16, seed=5, check_every_steps=check_every
        )
        train(model, lambda e: to_batches(TRAIN, 16, shuffle_seed=e), 20, config)
        return model.classifier.weight.detach().clone()

    assert torch.equal(weights(1), weights(5))


def test_a_nan_between_checks_is_caught_at_the_next_one_and_rolled_back():
    from tests.core.test_train import TRAIN, Recorder, tiny_model, to_batches

    model = tiny_model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    calls = {"n": 0}

    def exploding_loss(m, batch):
        calls["n"] += 1
        out = m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        loss = torch.nn.functional.cross_entropy(out.logits, batch["labels"])
        if calls["n"] == 3:
            loss = loss * float("nan")
        return loss, {"loss": loss.detach()}

    config = TrainConfig(
        epochs=1, learning_rate=1e-3, batch_size=16, log_every_steps=100, check_every_steps=5
    )
    rec = Recorder()
    with pytest.raises(NonFiniteLoss, match="step 5: the loss became nan"):
        train(model, lambda e: to_batches(TRAIN, 16), 20, config, loss_fn=exploding_loss,
              callbacks=rec)  # fmt: skip
    assert rec.ended == "failed" and calls["n"] == 5
    for key, value in model.state_dict().items():  # the NaN update never survives
        assert torch.equal(value, start[key])
