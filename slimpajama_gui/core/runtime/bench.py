"""Size, parameters, memory, latency and throughput, measured the same way every time.

The result records how it was measured (threads, sentences and where they came from,
warm-up, repetitions, backend, versions), so a number in a report can always be traced
to its method. Latency is the model's forward pass on pre-tokenized input at batch 1
(tokenization is the same for every variant and is excluded); throughput is padded
batches of 32.

One runner per backend: every benchmark path (``slimpajama bench``, a recipe's
benchmark step, Compare's Benchmark action, ``benchmarks/``) gets its runner from
:func:`runner_for` — :class:`TorchRunner` for PyTorch models, ``OrtRunner`` (with the
thread count asked for) for ONNX ones — and the runner counts the parameters it runs
(:meth:`TorchRunner.parameters`, ``OrtRunner.parameters`` from the ONNX initializers).

Example:
    >>> result = benchmark(runner_for(model, threads=2), tokenizer, sentences)  # doctest: +SKIP
    >>> f"{result.latency_p50_ms:.1f} ms"
    '10.4 ms'
"""

from __future__ import annotations

import os
import platform
import resource
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

Inputs = dict[str, np.ndarray]


@dataclass
class BenchConfig:
    threads: int = 2
    sentences: int = 200  # how many of the given sentences to use
    warmup: int = 10  # untimed calls before measuring
    repeats: int | None = 3  # timed passes over all sentences at batch 1; None = auto
    auto_seconds: float = 3.0  # with repeats=None: passes that fill about this long
    throughput_batch: int = 32
    max_length: int = 128


@dataclass
class BenchResult:
    backend: str
    threads: int
    sentences: int
    latency_samples: int
    latency_p50_ms: float
    latency_p95_ms: float
    latency_mean_ms: float
    throughput_per_s: float
    throughput_batch: int
    peak_rss_mb: float
    size_bytes: int | None
    parameters: int | None
    nonzero_parameters: int | None
    versions: str
    method: str
    #: What was timed, e.g. "200 sentences of /data/sst2/dev.tsv (column sentence)".
    timed: str = ""
    #: The CPU the figures were measured on (:func:`machine_description`); latencies of
    #: two machines are not comparable. Empty in figures from before it was recorded.
    machine: str = ""
    #: Latency (batch 1) and throughput are CPU figures, whatever device trained the
    #: model (a variant's ``metrics.training.trained_on`` says which).
    device: str = "cpu"
    #: :attr:`method` without what was timed, for a report that names that on its own
    #: line (``slimpajama bench``).
    procedure: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


class TorchRunner:
    """Runs a PyTorch classifier on numpy inputs (the backend every other one is compared to)."""

    name = "pytorch"
    #: Set per call by :func:`benchmark` (``torch.set_num_threads``), not fixed here.
    threads: int | None = None

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()

    @torch.inference_mode()
    def __call__(self, inputs: Inputs) -> np.ndarray:
        out = self.model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
        return out.logits.float().numpy()

    def parameters(self) -> tuple[int, int]:
        """(parameters, non-zero parameters) of the model, as :func:`count_parameters`."""
        return count_parameters(self.model)


def runner_for(
    model: nn.Module,
    *,
    backend: str = "auto",
    threads: int = 2,
    export_dir: Path | None = None,
):
    """The runner that times ``model`` on ``backend``: the one place a backend is chosen.

    Args:
        model: what :meth:`~slimpajama_gui.core.runtime.loading.ModelHandle.load_model`
            returns: a PyTorch model (float or quantized), or an ONNX variant's
            ``OnnxClassifier``.
        backend: ``"auto"`` (ONNX variants in onnxruntime, the others in PyTorch),
            ``"pytorch"`` or ``"onnxruntime"``.
        threads: CPU threads; an onnxruntime session is made with this many (PyTorch's
            are set by :func:`benchmark` around the timed calls).
        export_dir: where a PyTorch model is exported to ONNX when asked to run in
            onnxruntime (``model.onnx`` is written there); None refuses that case.

    Returns:
        A :class:`TorchRunner` or an ``OrtRunner``: numpy inputs -> numpy logits, with
        ``name``, ``threads`` and ``parameters()``.

    Raises:
        UserError: an ONNX variant asked to run in PyTorch, a PyTorch-quantized model
            asked to run in onnxruntime, or an export without ``export_dir``.
    """
    from slimpajama_gui.core.errors import UserError
    from slimpajama_gui.core.runtime.onnx_runner import OrtRunner

    ort_model = getattr(model, "runner", None)
    if backend == "auto":
        backend = "onnxruntime" if ort_model is not None else "pytorch"
    if backend == "pytorch":
        if ort_model is not None:
            raise UserError(
                "this is an ONNX variant: it runs in onnxruntime only; benchmark it with "
                "backend 'onnxruntime' (or 'auto')."
            )
        return TorchRunner(model.to("cpu"))  # latency is a CPU figure
    if backend != "onnxruntime":
        raise UserError(f"unknown backend {backend!r}; use 'auto', 'pytorch' or 'onnxruntime'.")
    if ort_model is not None:
        if ort_model.threads == threads:
            return ort_model
        # The session's thread count is fixed when it is made: a new one honours it.
        return OrtRunner(ort_model.path, threads=threads, config=ort_model.config)
    if getattr(model, "quantization", None) is not None:
        raise UserError(
            "benchmark.backend: a PyTorch-quantized model cannot run in onnxruntime; "
            "quantize with 'backend: onnxruntime' instead, or benchmark with pytorch."
        )
    if export_dir is None:
        raise UserError(
            "this PyTorch model would have to be exported to ONNX to run in onnxruntime; "
            "export it first (an 'export' step), or benchmark it with pytorch."
        )
    from slimpajama_gui.core.techniques import onnx_export

    path = onnx_export.export_onnx(model.to("cpu"), Path(export_dir) / onnx_export.ONNX_NAME)
    return OrtRunner(path, threads=threads, config=model.config)


@dataclass
class TimedText:
    """Sentences to time and where they came from (said with every result).

    Attributes:
        sentences: the texts, in order; a benchmark uses the first ``sentences`` of them.
        source: where they came from, e.g. ``"/data/sst2/dev.tsv (column sentence)"``.
    """

    sentences: list[str]
    source: str

    def describe(self, used: int, asked: int | None = None) -> str:
        """``"200 sentences of /data/sst2/dev.tsv (column sentence)"``; when the file had
        fewer than ``asked``, it says so: ``"100 sentences (all it has; 200 asked) of …"``."""
        short = f" (all it has; {asked:,} asked)" if asked is not None and asked > used else ""
        return f"{used:,} sentence{'s' if used != 1 else ''}{short} of {self.source}"


def read_timed_text(
    path: Path,
    column: str = "sentence",
    why: str = "",
    field_name: str = "text column",
    *,
    format: str | None = None,
    format_field: str = "format",
) -> TimedText:
    """The ``column`` of a data file as :class:`TimedText` (``why``: appended to the source).

    Args:
        format, format_field: the file's format when its suffix does not say, and how
            the user gives it (``--format`` on the command line).

    Raises:
        UserError: the file cannot be read or has no such column (named as ``field_name``).
    """
    from slimpajama_gui.core import data as data_mod

    table = data_mod.read_table(path, format, format_field=format_field)
    texts = table.column(column, field_name)
    source = f"{path} (column {column}{', ' + why if why else ''})"
    return TimedText([str(t) for t in texts], source)


def recorded_eval_text(folder: Path) -> TimedText | None:
    """The eval sentences of the recipe that made the variant in ``folder``, if it says.

    What the variant's own benchmark step timed (and what docs/benchmarks.md times: the
    first 200 SST-2 dev sentences), so a later ``slimpajama bench`` times the same text.
    None when the folder has no record, its recipe names no eval file (the built-in demo
    data's is its dev file), or that file is gone.
    """
    from slimpajama_gui.core import data as data_mod
    from slimpajama_gui.core.errors import UserError
    from slimpajama_gui.core.storage.variant import VariantRecord

    record = VariantRecord.read_or_none(folder)
    dataset = (record.recipe or {}).get("dataset") if record is not None else None
    if not isinstance(dataset, dict):
        return None
    train = dataset.get("train")
    if not dataset.get("eval"):
        if not (isinstance(train, str) and train.strip().lower() == data_mod.DEMO):
            return None
        dataset = {**dataset, "eval": data_mod.DEMO}  # as load_dataset reads the demo data
    try:
        spec = data_mod.DatasetSpec.from_dict(dataset)
        if str(spec.eval).strip().lower() == data_mod.DEMO:
            path = data_mod.demo_path("dev")
        else:
            path = Path(str(spec.eval)).expanduser()
            if not path.is_absolute() and record.recipe_dir:
                path = Path(record.recipe_dir) / path
        if not path.is_file():
            return None
        return read_timed_text(path, spec.text_column, "the eval set of the recipe that made it")
    except UserError:
        return None


def size_on_disk(folder: Path) -> int:
    """Bytes of every file in a saved model folder (weights, config, tokenizer)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(parameters, non-zero parameters); pruned weights count as zeros.

    Quantized modules keep their weights in buffers or packed params rather than
    ``nn.Parameter``s; they count with their logical shape (in x out + bias, or rows x
    dim), so an int8 model reports the same parameters as its float parent.
    """
    total = nonzero = 0
    for module in model.modules():
        own = list(module.parameters(recurse=False))
        for p in own:
            total += p.numel()
            nonzero += int(torch.count_nonzero(p.detach()))
        if any(name == "weight" for name, _ in module.named_parameters(recurse=False)):
            continue
        if hasattr(module, "in_features") and hasattr(module, "out_features"):
            n = module.in_features * module.out_features + module.out_features
        elif hasattr(module, "num_embeddings") and hasattr(module, "embedding_dim"):
            n = module.num_embeddings * module.embedding_dim
        else:
            continue
        total += n
        nonzero += n  # packed weights: sparsity is not recovered from them
    return total, nonzero


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _PeakRss:
    """Samples resident memory every 5 ms while the benchmark runs."""

    def __init__(self) -> None:
        self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_bytes())

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


@contextmanager
def torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def encode_for_bench(tokenizer, sentences: Sequence[str], max_length: int) -> list[Inputs]:
    """One unpadded int64 input per sentence, as a batch-1 caller would send it."""
    out = []
    for s in sentences:
        enc = tokenizer(s, truncation=True, max_length=max_length, return_tensors="np")
        out.append(
            {
                k: v.astype(np.int64)
                for k, v in enc.items()
                if k in ("input_ids", "attention_mask", "token_type_ids")
            }
        )
    return out


def machine_description() -> str:
    """The CPU model and logical CPU count, e.g. ``"Intel(R) Xeon(R) ... (16 CPUs)"``.

    Latency depends on it, so every benchmark records it and Compare only ranks
    latencies measured on the same one.
    """
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware")):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine() or "unknown CPU"
    return f"{model} ({os.cpu_count() or '?'} CPUs)"


def _versions(backend: str) -> str:
    text = f"torch {torch.__version__}"
    if backend == "onnxruntime":
        import onnxruntime

        text += f", onnxruntime {onnxruntime.__version__}"
    return text


def _pad_batch(items: Sequence[Inputs]) -> Inputs:
    width = max(i["input_ids"].shape[1] for i in items)
    batch: Inputs = {}
    for key in items[0]:
        rows = [np.pad(i[key], ((0, 0), (0, width - i[key].shape[1]))) for i in items]
        batch[key] = np.concatenate(rows, axis=0)
    return batch


def benchmark(
    runner: Callable[[Inputs], np.ndarray],
    tokenizer,
    sentences: Sequence[str],
    config: BenchConfig | None = None,
    *,
    model: nn.Module | None = None,
    folder: Path | None = None,
    control=None,
    source: str = "the sentences given",
) -> BenchResult:
    """Measure ``runner`` on ``sentences`` with a fixed thread count.

    Args:
        runner: maps numpy inputs to logits (from :func:`runner_for`).
        model: if given, its parameters and non-zero parameters are counted; else the
            runner's own ``parameters()`` when it has one.
        folder: if given, its size on disk is reported.
        source: where ``sentences`` came from, for ``BenchResult.timed`` and ``method``.
        control: a :class:`~slimpajama_gui.core.techniques.train.Control` checked before every
            call; after a stop the figures are partial (NaN where nothing was timed)
            and the caller should discard them.
    """
    config = config or BenchConfig()
    fixed = getattr(runner, "threads", None)
    if fixed is not None and fixed != config.threads:
        # An onnxruntime session keeps the threads it was made with: timing it under
        # another count would report a thread count it did not use.
        raise ValueError(
            f"the runner was made for {fixed} threads, the benchmark asks for "
            f"{config.threads}; make it with runner_for(..., threads={config.threads})"
        )

    def stopped() -> bool:
        return control is not None and control.should_stop

    sentences = list(sentences)[: config.sentences]
    if not sentences:
        raise ValueError("benchmark needs at least one sentence")
    inputs = encode_for_bench(tokenizer, sentences, config.max_length)
    samples: list[float] = []
    with torch_threads(config.threads), _PeakRss() as rss:
        t0 = time.perf_counter()
        warm = (inputs * (1 + config.warmup // len(inputs)))[: max(config.warmup, 1)]
        for item in warm:
            if stopped():
                break
            runner(item)
        repeats = config.repeats
        if repeats is None:
            # Enough passes to fill ~auto_seconds, so fast models get as many samples as
            # slow ones need for a stable median; at least one and at most 20.
            per_call = (time.perf_counter() - t0) / len(warm)
            repeats = int(min(20, max(1, config.auto_seconds / (per_call * len(inputs)))))
        for _ in range(repeats):
            for item in inputs:
                if stopped():
                    break
                t0 = time.perf_counter()
                runner(item)
                samples.append(time.perf_counter() - t0)
        batches = [
            _pad_batch(inputs[i : i + config.throughput_batch])
            for i in range(0, len(inputs), config.throughput_batch)
        ]
        throughput = float("nan")
        if not stopped():
            runner(batches[0])
            t0 = time.perf_counter()
            for batch in batches:
                if stopped():
                    break
                runner(batch)
            else:
                throughput = len(inputs) / (time.perf_counter() - t0)
    ms = np.asarray(samples) * 1000.0
    params = nonzero = None
    if model is not None:
        params, nonzero = count_parameters(model)
    elif callable(getattr(runner, "parameters", None)):
        params, nonzero = runner.parameters()
    name = getattr(runner, "name", type(runner).__name__)
    timed = TimedText(sentences, source).describe(len(inputs), config.sentences)
    runner_text = (
        f"{name} forward pass on pre-tokenized input, {config.threads} "
        f"thread{'s' if config.threads != 1 else ''}"
    )
    protocol = (
        f"latency: batch 1, {len(inputs)} sentences x {repeats} passes after "
        f"{config.warmup} warm-up calls, p50/p95 of {len(samples)} calls; throughput: "
        f"padded batches of {config.throughput_batch}; peak RSS of the process "
        "sampled every 5 ms during the run"
    )
    return BenchResult(
        backend=name,
        threads=config.threads,
        sentences=len(inputs),
        latency_samples=len(samples),
        latency_p50_ms=float(np.percentile(ms, 50)) if len(ms) else float("nan"),
        latency_p95_ms=float(np.percentile(ms, 95)) if len(ms) else float("nan"),
        latency_mean_ms=float(ms.mean()) if len(ms) else float("nan"),
        throughput_per_s=float(throughput),
        throughput_batch=config.throughput_batch,
        peak_rss_mb=rss.peak / 1e6,
        size_bytes=size_on_disk(folder) if folder is not None else None,
        parameters=params,
        nonzero_parameters=nonzero,
        versions=_versions(name),
        machine=machine_description(),
        timed=timed,
        method=f"{runner_text}; timed: {timed}; {protocol}",
        procedure=f"{runner_text}; {protocol}",
    )
