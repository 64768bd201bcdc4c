"""The `slimpajama` command: help texts, one-sentence errors, exit codes, a real run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from slimpajama_gui import cli

COMMANDS = ["info", "models", "run", "resume", "rerun", "eval", "bench", "predict", "history"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: slimpajama {command}")
    # Every argument the parser knows is described in the help.
    sub = cli.build_parser()._subparsers._group_actions[0].choices[command]
    for action in sub._actions:
        if action.help and action.help != "==SUPPRESS==":
            assert action.help.split("(")[0].strip()[:30] in " ".join(out.split())


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert all(c in out for c in COMMANDS)


def _one_sentence_error(capsys, argv, expected_code=1) -> str:
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == expected_code
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_wrong_model_path_is_one_sentence(capsys, tmp_path):
    err = _one_sentence_error(capsys, ["info", str(tmp_path / "nope")])
    assert "nope" in err and "does not exist" in err


def test_bad_recipe_is_one_sentence_naming_key_and_line(capsys, tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(
        "name: x\nmodel: packaged\ndataset: {train: demo}\noutput: out\nsteps:\n  - type: finetune\n    epoch: 3\n"
    )
    err = _one_sentence_error(capsys, ["run", str(recipe)])
    assert "epoch" in err and "line 7" in err and "bad.yaml" in err


def test_missing_recipe_file(capsys, tmp_path):
    err = _one_sentence_error(capsys, ["run", str(tmp_path / "missing.yaml")])
    assert "missing.yaml" in err


def test_kind9_alias_bomb_and_device_recipes_are_one_sentence(capsys, tmp_path):
    # A 400-byte "billion laughs" in the recipe's name ran until killed.
    levels = ["  - &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"  - &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("name:\n" + "\n".join(levels) + "\nmodel: packaged\n")
    err = _one_sentence_error(capsys, ["run", str(bomb)])
    assert "bomb.yaml expands to more than 10,000 values" in err
    err = _one_sentence_error(capsys, ["run", "/dev/zero"])
    assert "/dev/zero is not a regular file" in err


def test_predict_refuses_an_encoder_without_a_head(capsys):
    err = _one_sentence_error(capsys, ["predict", "packaged", "hello"])
    assert "no trained classifier head" in err


def test_usage_error_exit_code(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run"])
    assert exit_info.value.code == 2


def test_run_eval_predict_bench_history(tiny_minilm, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"""name: cli-test
model: {tiny_minilm}
dataset: {{train: demo, labels: [negative, positive], max_length: 48}}
output: out
steps:
  - {{type: finetune, epochs: 2, learning_rate: 3.0e-3, batch_size: 16}}
  - {{type: evaluate}}
  - {{type: benchmark, sentences: 10, repeats: 1}}
"""
    )
    assert cli.main(["run", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "Eval accuracy" in out and "p50 (batch 1)" in out and "MB" in out and "ms" in out
    variant = tmp_path / "out" / "01-finetune"
    assert (variant / "model.safetensors").is_file()

    assert cli.main(["history"]) == 0
    out = capsys.readouterr().out
    assert "cli-test" in out and "done" in out

    from slimpajama_gui.core.data.spec import demo_path

    assert cli.main(["eval", str(variant), str(demo_path("dev"))]) == 0
    out = capsys.readouterr().out
    assert "Accuracy" in out and "negative" in out and "(100 rows" in out
    # However long the data's path (a deep checkout, CI's work folder), the title that
    # names it stays one line: output must not depend on where the repo lives.
    deep = tmp_path / ("d" * 150) / "dev.tsv"
    deep.parent.mkdir()
    deep.write_bytes(demo_path("dev").read_bytes())
    assert cli.main(["eval", str(variant), str(deep)]) == 0
    title = [line for line in capsys.readouterr().out.splitlines() if str(deep) in line]
    assert len(title) == 1 and "(100 rows" in title[0]
    # A missing file: a sentence about the command's DATA, not about a recipe.
    assert cli.main(["eval", str(variant), str(tmp_path / "missing.tsv")]) != 0
    err = capsys.readouterr().err
    assert "missing.tsv is not a file" in err and "recipe" not in err and "dataset." not in err
    # A file the command cannot read as it is: the advice names the command's flags,
    # which the user can type, never a recipe's keys (`format:`, `text_column: text`).
    text = tmp_path / "dev.txt"
    text.write_bytes(demo_path("dev").read_bytes())
    assert cli.main(["eval", str(variant), str(text)]) != 0
    err = capsys.readouterr().err
    assert "give `--format` one of" in err and "`format:`" not in err
    assert cli.main(["eval", str(variant), str(text), "--format", "tsv"]) == 0
    assert "(100 rows" in capsys.readouterr().out
    renamed = tmp_path / "renamed.csv"
    renamed.write_text("text,label\na fine film,positive\na dull one,negative\n")
    assert cli.main(["eval", str(variant), str(renamed)]) != 0
    err = capsys.readouterr().err
    assert "(--text-column)" in err and "e.g. `--text-column text`" in err
    assert "text_column" not in err and "dataset settings" not in err
    assert cli.main(["bench", str(variant), "--data", str(text), "--sentences", "2"]) != 0
    assert "give `--format` one of" in capsys.readouterr().err

    assert cli.main(["predict", str(variant), "a wonderful film", "a dreadful meal"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(
        line.split("\t")[0] in {"negative", "positive"} for line in lines
    )
    # An empty text still gets an answer, with a warning that it means nothing.
    assert cli.main(["predict", str(variant), "fine", "  "]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.strip().splitlines()) == 2
    assert "TEXT 2 is empty" in captured.err and "TEXT 1" not in captured.err

    assert cli.main(["bench", str(variant), "--sentences", "10", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "latency p50" in out and "Method:" in out
    # The demo data's eval rows are its dev file: the recipe's eval set, said once.
    assert "the eval set of the recipe that made it" in out and out.count("dev.tsv") == 1
    assert cli.main(["bench", str(variant), "--repeats", "1"]) == 0
    assert "100 sentences (all it has; 200 asked) of" in capsys.readouterr().out


def test_entry_point_runs_as_a_process():
    exe = Path(sys.executable).with_name("slimpajama")
    proc = subprocess.run(
        [str(exe), "info", "packaged"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "22,713,216" in proc.stdout and "30,522" in proc.stdout


def test_run_resume_continues_a_failed_job_with_the_fixed_recipe(tiny_minilm, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    text = f"""name: cli-resume
model: {tiny_minilm}
dataset: {{train: demo, labels: [negative, positive], max_length: 48}}
output: out
steps:
  - {{type: finetune, epochs: 1, learning_rate: 3.0e-3, batch_size: 16}}
  - {{type: prune, method: layers, keep_layers: [0, 7], recovery_epochs: 0}}
"""
    recipe.write_text(text)
    assert cli.main(["run", str(recipe)]) == 1
    assert "keep_layers" in capsys.readouterr().err
    weights = tmp_path / "out" / "01-finetune" / "model.safetensors"
    before = (weights.read_bytes(), weights.stat().st_mtime_ns)

    recipe.write_text(text.replace("[0, 7]", "[1]"))  # the user fixes step 2
    assert cli.main(["run", str(recipe), "--resume"]) == 0
    out = capsys.readouterr().out
    assert "continues at step 2 of 2 (prune); step 1 is reused" in out.replace("\n", " ")
    assert (tmp_path / "out" / "02-prune" / "model.safetensors").is_file()
    assert (weights.read_bytes(), weights.stat().st_mtime_ns) == before

    assert cli.main(["resume", str(tmp_path / "out")]) == 1
    assert "only a failed, cancelled or interrupted job" in capsys.readouterr().err

    assert cli.main(["rerun", str(tmp_path / "out"), "--from-step", "2"]) == 0
    assert "step 1 is reused from" in capsys.readouterr().out.replace("\n", " ")
    assert (tmp_path / "out-run2" / "02-prune" / "model.safetensors").is_file()
    assert (weights.read_bytes(), weights.stat().st_mtime_ns) == before


def test_run_prints_the_most_sensitive_parts_of_a_sensitivity_step(tiny_minilm, tmp_path, capsys):
    from slimpajama_gui.core.techniques.sensitivity import load_report

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"""name: cli-sensitivity
model: {tiny_minilm}
dataset: {{train: demo, labels: [negative, positive], max_length: 48}}
output: out
steps:
  - {{type: sensitivity, rows: 32, linears: false}}
"""
    )
    assert cli.main(["run", str(recipe)]) == 0
    out = capsys.readouterr().out
    report = load_report(tmp_path / "out" / "01-sensitivity")
    assert "Most sensitive parts (32 eval rows" in out and "Accuracy change (points)" in out
    ((layer, worst),) = report.most_sensitive("layer", 1)
    assert f"drop layer {layer}" in out and f"{worst.loss_change:+.4f}" in out
    ((head, _),) = report.most_sensitive("head", 1)
    assert f"remove head {head[0]}.{head[1]} (layer.head)" in out
    assert "int8" not in out.split("Most sensitive parts")[1]  # linears were not measured


def test_bench_on_an_onnx_result_names_onnxruntime_its_parameters_and_threads(
    tiny_minilm, tmp_path, capsys, monkeypatch
):
    """Issue 13 item 7: the ONNX variant is timed in onnxruntime with the threads asked
    for, its parameters come from the graph, and the text timed is the recipe's eval set."""
    import numpy as np
    import onnx

    from slimpajama_gui.core.data.spec import demo_path
    from slimpajama_gui.core.runtime import onnx_runner
    from slimpajama_gui.core.storage.variant import VariantRecord

    dev = tmp_path / "held-out.tsv"
    dev.write_bytes(demo_path("dev").read_bytes())
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"""name: cli-onnx
model: {tiny_minilm}
dataset: {{train: demo, eval: {dev.name}, labels: [negative, positive], max_length: 48}}
output: out
steps:
  - {{type: quantize, method: dynamic_int8, backend: onnxruntime, tolerance: 100}}
  - {{type: benchmark, threads: 1, sentences: 5, repeats: 1}}
"""
    )
    assert cli.main(["run", str(recipe)]) == 0
    variant = tmp_path / "out" / "01-quantize"
    step = VariantRecord.read(variant).metrics["benchmark"]  # the recipe's own step
    graph = onnx.load(str(variant / "model.onnx")).graph
    weights = [
        t for t in graph.initializer
        if t.data_type not in (onnx.TensorProto.INT64, onnx.TensorProto.INT32)
        and not t.name.endswith(("_scale", "_zero_point"))
    ]  # fmt: skip
    expected = sum(int(np.prod(t.dims)) for t in weights)
    sessions: list[int] = []
    make_session = onnx_runner._session

    def counting(path, threads):
        sessions.append(threads)
        return make_session(path, threads)

    monkeypatch.setattr(onnx_runner, "_session", counting)
    capsys.readouterr()
    assert (
        cli.main(["bench", str(variant), "--sentences", "7", "--repeats", "1", "--threads", "3"])
        == 0
    )
    out = capsys.readouterr().out
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in out.splitlines()
        if line.count("│") == 3
    }
    assert rows["backend"].startswith("onnxruntime (")
    assert rows["threads"] == "3" and sessions and set(sessions) == {3}
    total, nonzero = (
        int(x.replace(",", ""))
        for x in rows["parameters (non-zero)"].replace("(", "").rstrip(")").split()
    )
    assert total == expected > 0 and 0 < nonzero <= total
    # The recipe's benchmark step went through the same runner: same backend and count.
    assert (step["backend"], step["parameters"], step["threads"]) == ("onnxruntime", total, 1)
    assert step["timed"].startswith(f"5 sentences of {dev.name} (column sentence")
    assert f"Timed: 7 sentences of {dev} (column sentence" in out
    assert "Method: onnxruntime forward pass" in out and "pytorch" not in out.split("Method:")[1]
    # What was timed is said once, on its own line, not again inside the method.
    assert "timed:" not in out.split("Method:")[1] and "latency: batch 1" in out
    assert "pre-tokenized input, 3 threads;" in " ".join(out.split())
    assert (
        cli.main(["bench", str(variant), "--sentences", "3", "--repeats", "1", "--threads", "1"])
        == 0
    )
    assert "pre-tokenized input, 1 thread;" in " ".join(capsys.readouterr().out.split())
    # --data overrides the recorded eval set, and says so.
    assert cli.main(["bench", str(variant), "--sentences", "5", "--repeats", "1",
                     "--data", str(demo_path("train"))]) == 0  # fmt: skip
    assert (
        f"Timed: 5 sentences of {demo_path('train')} (column sentence)." in capsys.readouterr().out
    )


def test_run_prints_a_recipe_s_warning_as_a_warning(tiny_minilm, tmp_path, capsys):
    """A distillation with no weight on the teacher: valid, so the job runs, but the
    console says it as a warning, not as one more 'note:' beside routine ones."""
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\ngood film,1\nbad film,7\n", encoding="utf-8")
    recipe = tmp_path / "zero.yaml"
    recipe.write_text(
        f"""name: zero
model: {tiny_minilm}
dataset: {{train: {bad}, eval: {bad}, text_column: text}}
output: out
steps:
  - {{type: distill, student_layers: [0], alpha_kd: 0}}
"""
    )
    assert cli.main(["run", str(recipe)]) == 1  # then fails on its data: no step runs
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert "warning: Step 1 'distill': the KD weight (alpha_kd)" in " ".join(out.split())
    assert "note: Step 1 'distill'" not in " ".join(out.split())


def test_max_steps_caps_every_training_loop_for_one_command(tiny_minilm, tmp_path, capsys):
    import os

    from slimpajama_gui.core.storage.history import JobStore
    from slimpajama_gui.core.techniques.train import MAX_STEPS_ENV

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"""name: capped
model: {tiny_minilm}
dataset: {{train: demo, labels: [negative, positive], max_length: 32}}
output: out
steps:
  - {{type: finetune, epochs: 3, batch_size: 16}}
"""
    )
    assert cli.main(["run", str(recipe), "--max-steps", "2"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "stops after 2 optimizer steps" in out
    assert MAX_STEPS_ENV not in os.environ  # the cap ends with the command
    with JobStore() as store:
        job = store.list_jobs(limit=1)[0]
        steps = [r.value for r in store.metrics(job.id, key="step")]
    assert steps and max(steps) <= 2, steps
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", str(recipe), "--max-steps", "0"])
    assert exit_info.value.code == 2
    assert "--max-steps: '0' is not a number of steps" in capsys.readouterr().err
