"""One inference path: texts in, labels and class probabilities out, for any saved model.

The Playground, Compare and ``slimpajama predict`` all predict through here, so a
float, a quantized and an ONNX variant are loaded (:mod:`~.loading`), encoded
(:class:`~.inputs.ModelInputs`) and timed the same way everywhere:

* :class:`ModelPredictor` loads one model folder and predicts one or many texts, and
  says how it reads one (:class:`TextReading`: cut to its length, words it does not know);
* :class:`PredictorCache` keeps a few loaded predictors by folder for worker threads;
* :func:`compare_texts` runs two predictors over many texts in chunks and counts where
  they disagree (:class:`PairResult`).

No Qt here: the GUI runs these on worker threads, the CLI on its own thread.

Example:
    >>> predictor = ModelPredictor("runs/demo/final")  # doctest: +SKIP
    >>> [p.label for p in predictor.predict_texts(["a good film"])]  # doctest: +SKIP
    ['positive']
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from slimpajama_gui.core.data.dataset import Split
from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.runtime.evaluate import predict, row_logits
from slimpajama_gui.core.runtime.inputs import model_inputs
from slimpajama_gui.core.runtime.loading import open_model

log = logging.getLogger(__name__)

#: Models kept loaded at once (switching pickers back and forth stays instant).
CACHE_SIZE = 4
#: Texts per call of :meth:`Predictor.predict` in :func:`compare_texts`; between two
#: chunks a worker can be asked to stop.
COMPARE_CHUNK = 32
#: What a refusal of a headless model suggests, unless the caller says otherwise.
NO_HEAD_HINT = "fine-tune it in Compress first, or pick another model."
#: Unknown words a :class:`TextReading` note lists before "…".
UNKNOWN_LISTED = 5


class Predictor(Protocol):
    """Anything that turns texts into class probabilities.

    ``predict`` returns ``(probs, labels, ms)``: ``probs`` (N, C) float32 rows summing
    to 1, ``labels`` the C class names in column order, and ``ms`` the milliseconds the
    model itself took (tokenization excluded, as in :mod:`slimpajama_gui.core.runtime.bench`).
    Implementations must be safe to call from any worker thread.
    """

    label_names: list[str]

    def predict(self, texts: Sequence[str]) -> tuple[np.ndarray, list[str], float]: ...


@dataclass(frozen=True)
class TextReading:
    """How one model reads one text: its length in tokens and the words it does not know.

    Attributes:
        tokens: tokens of the whole text, special tokens included, before truncation.
        read: tokens the model reads (``tokens`` cut to the predictor's ``max_length``).
        unknown_words: words of the part read that the tokenizer turned into its unknown
            token, as typed, each once, in text order (a pruned vocabulary makes more).
        unk_token: the tokenizer's unknown token ("[UNK]"), or None if it has none.
    """

    tokens: int
    read: int
    unknown_words: tuple[str, ...] = ()
    unk_token: str | None = None

    @property
    def truncated(self) -> bool:
        return self.tokens > self.read

    def notes(self) -> list[str]:
        """Sentences for the user: the cut, then the unknown words; empty when neither."""
        notes = []
        if self.truncated:
            notes.append(
                f"Cut to {self.read} tokens of {self.tokens}: "
                "the model reads only the start of this text."
            )
        n = len(self.unknown_words)
        if n:
            # Quoted: a sign (",") is a word to the tokenizer too, and reads oddly bare.
            listed = ", ".join(f"“{w}”" for w in self.unknown_words[:UNKNOWN_LISTED])
            more = ", …" if n > UNKNOWN_LISTED else ""
            notes.append(
                f"{n} word{'s' if n > 1 else ''} unknown to this model's vocabulary: "
                f"{listed}{more}; read as {self.unk_token or 'the unknown token'}."
            )
        return notes


@dataclass(frozen=True)
class Prediction:
    """One model's answer for one text.

    Attributes:
        text: the text as given.
        path: the model folder.
        label: the most likely class name.
        probs: (C,) float32 class probabilities, in ``label_names`` order.
        label_names: the C class names.
        ms: milliseconds of the forward pass that held this text (tokenization excluded;
            a :class:`PredictorCache` warms a model up before its first one).
        reading: how the model read the text (cut, unknown words), when asked for.
        threads: CPU threads that forward pass ran on, when the predictor says.
    """

    text: str
    path: Path
    label: str
    probs: np.ndarray
    label_names: list[str]
    ms: float
    reading: TextReading | None = None
    threads: int | None = None

    @classmethod
    def from_row(
        cls,
        text: str,
        path: Path,
        probs: np.ndarray,
        names: Sequence[str],
        ms: float,
        reading: TextReading | None = None,
        threads: int | None = None,
    ) -> Prediction:
        """The prediction whose class probabilities are ``probs`` (C,)."""
        label = str(names[int(np.argmax(probs))])
        return cls(text, Path(path), label, probs, list(names), ms, reading, threads)

    def latency_text(self) -> str:
        """Its latency with what it measures: ``"3.2 ms · batch 1, 2 threads"``."""
        if self.threads is None:
            return f"{self.ms:.1f} ms · batch 1"
        unit = "thread" if self.threads == 1 else "threads"
        return f"{self.ms:.1f} ms · batch 1, {self.threads} {unit}"


@dataclass(frozen=True)
class Scores:
    """Class probabilities for N texts, with what encoding them had to say.

    Attributes:
        probs: (N, C) float32, rows summing to 1.
        label_names: the C class names in column order.
        ms: milliseconds of the forward passes (tokenization excluded).
        warnings: sentences from encoding (a text truncated to what the model reads).
        threads: CPU threads the forward passes ran on (None: none ran).
    """

    probs: np.ndarray
    label_names: list[str]
    ms: float
    warnings: list[str] = field(default_factory=list)
    threads: int | None = None


class ModelPredictor:
    """A saved model (float, quantized or ONNX) and its tokenizer, ready to predict.

    Loading reads the folder's weights and tokenizer files; construct it on a worker.

    Args:
        path: the model folder.
        max_length: tokens per text asked for; cut to what the position table holds.
        batch_size: texts per forward pass.
        no_head_hint: what the refusal of an encoder-only model suggests doing.

    Raises:
        UserError: the folder cannot be opened, its tokenizer does not fit the model, or
            its model has no trained classifier head (an encoder only), so its
            predictions would be noise.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        max_length: int = 128,
        batch_size: int = 32,
        no_head_hint: str = NO_HEAD_HINT,
    ) -> None:
        handle = open_model(path)
        model = handle.load_model()
        report = getattr(model, "load_report", None)  # an ONNX variant has none
        if report is not None and report.new_keys:
            raise UserError(
                f"{handle.info.name} has no trained classifier head (it is an encoder only); "
                f"{no_head_hint}"
            )
        self.path = Path(handle.info.path)
        self.name = handle.info.name
        import torch

        from slimpajama_gui.core.model.saving import non_finite_tensors

        bad = non_finite_tensors(model) if isinstance(model, torch.nn.Module) else []
        if bad:  # X1: its every score would be NaN
            raise UserError(
                f"{handle.info.name} cannot predict: its weights contain inf/NaN "
                f"({', '.join(bad[:3])}); it was saved from a training that diverged, or "
                "the file is damaged. Train it again with a lower learning rate, or copy it again."
            )
        self.model = model.eval()
        self.backend = "onnx" if hasattr(model, "runner") else "pytorch"
        self.tokenizer = handle.load_tokenizer()
        self.inputs = model_inputs(model, self.tokenizer, self.name)
        #: The tokens asked for, before fitting (for :meth:`length_note`).
        self.requested_length = max_length
        self.max_length = self.inputs.fit_length(max_length)
        self.batch_size = batch_size
        config = model.config
        self.label_names = [str(config.id2label[i]) for i in range(config.num_labels)]
        # A fast tokenizer is not safe to share between threads ("Already borrowed"), and
        # the live and the batch tab may both use this model at once.
        self._lock = threading.Lock()

    @property
    def threads(self) -> int:
        """CPU threads a forward pass runs on now: the ONNX Runtime session's, or
        PyTorch's (process-wide, so read when timing)."""
        runner = getattr(self.model, "runner", None)
        if runner is not None and isinstance(getattr(runner, "threads", None), int):
            return runner.threads
        import torch

        return torch.get_num_threads()

    def length_note(self, setting: str) -> str | None:
        """A sentence when ``setting`` asked for more tokens than the model reads, else None."""
        return self.inputs.length_note(self.requested_length, setting)

    def scores(self, texts: Sequence[str]) -> Scores:
        """Class probabilities of ``texts`` (N), in batches of ``batch_size``.

        Raises:
            UserError: the tokenizer gives inputs the model cannot read (see
                :meth:`~.inputs.ModelInputs.encode`).
        """
        import torch

        texts = [str(t) for t in texts]
        if not texts:
            empty = np.zeros((0, len(self.label_names)), np.float32)
            return Scores(empty, list(self.label_names), 0.0)
        rows: list[np.ndarray] = []
        warnings: list[str] = []
        seconds = 0.0
        with self._lock, torch.inference_mode():
            threads = self.threads
            for start in range(0, len(texts), self.batch_size):
                inputs, said = self.inputs.batch(
                    texts[start : start + self.batch_size], self.tokenizer, self.max_length
                )
                warnings.extend(said)
                t0 = time.perf_counter()
                logits = row_logits(
                    self.model,
                    inputs["input_ids"],
                    inputs.get("attention_mask"),
                    inputs.get("token_type_ids"),
                )
                seconds += time.perf_counter() - t0
                if not bool(torch.isfinite(logits).all()):
                    raise UserError(
                        f"{self.name} gives inf/NaN scores for this text, so no figures are "
                        "shown: its training diverged or its weights are damaged. Train it "
                        "again with a lower learning rate, or use another model."
                    )
                rows.append(torch.softmax(logits.float(), dim=-1).numpy())
        probs = np.concatenate(rows).astype(np.float32)
        return Scores(probs, list(self.label_names), seconds * 1000, warnings, threads)

    def reading(self, text: str) -> TextReading:
        """How this model reads ``text``: tokens before and after the cut, unknown words.

        Computed from the tokenizer's output (no forward pass). Unknown words are looked
        for only in the tokens the model reads.
        """
        tokenizer = self.tokenizer
        fast = bool(getattr(tokenizer, "is_fast", False))
        with self._lock:
            enc = tokenizer(
                str(text),
                truncation=False,
                return_special_tokens_mask=True,
                return_offsets_mapping=fast,
                return_attention_mask=False,
                verbose=False,  # the whole text is counted here, never fed to the model
            )
        ids = list(enc["input_ids"])
        special = list(enc["special_tokens_mask"])
        tokens = len(ids)
        read = min(tokens, self.max_length)
        unk_id = tokenizer.unk_token_id
        unk_token = tokenizer.unk_token
        if unk_id is None:
            return TextReading(tokens, read, (), None)
        # Truncation drops content tokens from the end; the special ones stay.
        content_read = max(0, self.max_length - sum(special))
        words: list[str] = []
        if fast:
            seen = 0
            for token_id, is_special, (start, end) in zip(
                ids, special, enc["offset_mapping"], strict=True
            ):
                if is_special:
                    continue
                seen += 1
                if seen > content_read:
                    break
                if token_id == unk_id and end > start:
                    words.append(str(text)[start:end])
        else:
            # No offsets from a slow tokenizer: ask word by word.
            with self._lock:
                for word in str(text).split():
                    if unk_token in tokenizer.tokenize(word):
                        words.append(word)
        unique = tuple(dict.fromkeys(words))
        return TextReading(tokens, read, unique, unk_token)

    def split_logits(self, split: Split) -> Generator[tuple[int, int], None, np.ndarray]:
        """Logits (N, C) of a dataset split's rows (with their text pairs), in its order.

        A generator: it yields ``(batches done, batches in all)`` after each forward
        pass, where a worker can be asked to stop, and returns the logits. Rows are
        batched by length, so little padding is computed; ``max_length`` is this
        predictor's.

        Raises:
            UserError: the tokenizer gives inputs the model cannot read.
        """
        import torch

        from slimpajama_gui.core import data as data_mod

        enc = self.inputs.encode_split(split, self.tokenizer, self.max_length)
        total = math.ceil(len(split.texts) / self.batch_size)
        batches = data_mod.batches(
            enc,
            split.labels,
            self.batch_size,
            shuffle=False,
            seed=0,
            pad_id=self.tokenizer.pad_token_id or 0,
            sort_by_length=True,
        )
        logits, order = [], []
        for done, batch in enumerate(batches, start=1):
            # Grad mode and the lock are held per batch, never across a yield: a
            # generator left suspended (a stopped worker) would otherwise leave its
            # thread in inference mode, and the next job's training on that pool
            # thread would compute no gradients.
            with self._lock, torch.inference_mode():
                logits.append(predict(self.model, [batch]).logits)  # rows sorted by index
            order.append(np.sort(batch["index"].numpy()))
            yield done, total
        if not logits:
            return np.zeros((0, len(self.label_names)), np.float32)
        back = np.argsort(np.concatenate(order), kind="stable")
        return np.concatenate(logits)[back]

    def warm_up(self) -> None:
        """One forward pass whose time is thrown away.

        A model's first pass pays one-time costs (kernel selection, buffers): 2.5 s on a
        first Playground prediction, shown as that text's latency. Errors are left to the
        first real prediction, which reports them with its sentence.
        """
        try:
            self.scores(["warm-up"])
        except Exception:  # an optimisation: predict() raises the same error with its sentence
            log.debug("warm-up of %s failed", self.name, exc_info=True)

    def predict(self, texts: Sequence[str]) -> tuple[np.ndarray, list[str], float]:
        """``(probs (N, C), label names, ms)``: the :class:`Predictor` interface."""
        s = self.scores(texts)
        return s.probs, s.label_names, s.ms

    def predict_texts(self, texts: Sequence[str]) -> list[Prediction]:
        """One :class:`Prediction` per text; each carries its batch's milliseconds."""
        s = self.scores(texts)
        return [
            Prediction.from_row(str(text), self.path, row, s.label_names, s.ms, threads=s.threads)
            for text, row in zip(texts, s.probs, strict=True)
        ]


PredictorFactory = Callable[[Path], Predictor]


class PredictorCache:
    """Loaded predictors by folder, shared by worker threads; least recently used go first.

    Two workers asking for the same folder at once load it once: the second waits for
    the first. Only workers call :meth:`get` (it may load); any thread may call
    :meth:`peek`.

    Args:
        factory: builds a predictor for a resolved folder; :class:`ModelPredictor`.
        size: predictors kept loaded.
    """

    def __init__(self, factory: PredictorFactory = ModelPredictor, size: int = CACHE_SIZE) -> None:
        self.factory = factory
        self.size = size
        self._items: OrderedDict[Path, Predictor] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[Path, threading.Lock] = {}
        #: How many times each folder was loaded (tests check the cache works).
        self.loads: dict[Path, int] = {}

    @staticmethod
    def _key(path: Path | str) -> Path:
        return Path(path).expanduser().resolve()

    def peek(self, path: Path | str) -> Predictor | None:
        """The loaded predictor of ``path``, or None; never loads."""
        with self._lock:
            return self._items.get(self._key(path))

    def get(self, path: Path | str) -> Predictor:
        """The predictor of ``path``, loading it if needed (raises what the factory raises)."""
        key = self._key(path)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            predictor = self.factory(key)
            warm_up = getattr(predictor, "warm_up", None)
            if callable(warm_up):  # so the first latency shown is the model's own
                warm_up()
            with self._lock:
                self._items[key] = predictor
                self.loads[key] = self.loads.get(key, 0) + 1
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
                self._loading.pop(key, None)
        return predictor

    def clear(self) -> None:
        """Forget every loaded predictor."""
        with self._lock:
            self._items.clear()


# --------------------------------------------------------------------------- A/B


@dataclass
class PairResult:
    """Two models' predictions over the same N texts, and where they disagree.

    Attributes:
        texts: the N texts.
        probs_a, probs_b: (N, C) class probabilities of model A and B.
        names_a, names_b: their class names.
        ms_a, ms_b: milliseconds of their forward passes, all texts together.
        pred_a, pred_b: (N,) the most likely class id of each row.
        disagree: (N,) bool, True where the two predicted labels differ.
    """

    texts: list[str]
    probs_a: np.ndarray
    names_a: list[str]
    probs_b: np.ndarray
    names_b: list[str]
    ms_a: float = 0.0
    ms_b: float = 0.0
    pred_a: np.ndarray = field(init=False)
    pred_b: np.ndarray = field(init=False)
    disagree: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.pred_a = self.probs_a.argmax(axis=1)
        self.pred_b = self.probs_b.argmax(axis=1)
        if self.names_a == self.names_b or len(self.names_a) != len(self.names_b):
            labels_a = np.asarray(self.names_a, dtype=object)[self.pred_a]
            labels_b = np.asarray(self.names_b, dtype=object)[self.pred_b]
            self.disagree = labels_a != labels_b
        else:
            # Same number of classes under other names (LABEL_0 vs negative): by id.
            self.disagree = self.pred_a != self.pred_b

    @property
    def disagreements(self) -> int:
        """How many rows the two models label differently."""
        return int(self.disagree.sum())


def compare_texts(
    cache: PredictorCache,
    path_a: Path,
    path_b: Path,
    texts: list[str],
    chunk: int = COMPARE_CHUNK,
) -> Iterator[tuple[int, int]]:
    """Both models over ``texts`` in chunks; a generator, so a worker can stop it.

    Yields ``(done, total)`` texts before the first chunk and after each; returns
    (``StopIteration.value``) a :class:`PairResult`.

    Raises:
        UserError: a model cannot be loaded or cannot read the texts.
    """
    yield (0, len(texts))
    a, b = cache.get(path_a), cache.get(path_b)
    parts: dict[str, list[np.ndarray]] = {"a": [], "b": []}
    names: dict[str, list[str]] = {"a": list(a.label_names), "b": list(b.label_names)}
    ms = {"a": 0.0, "b": 0.0}
    for start in range(0, len(texts), chunk):
        part = texts[start : start + chunk]
        for side, predictor in (("a", a), ("b", b)):
            probs, labels, took = predictor.predict(part)
            parts[side].append(probs)
            names[side] = labels
            ms[side] += took
        yield (start + len(part), len(texts))
    empty = {s: np.zeros((0, len(names[s])), np.float32) for s in ("a", "b")}
    return PairResult(
        texts,
        np.concatenate(parts["a"]) if parts["a"] else empty["a"],
        names["a"],
        np.concatenate(parts["b"]) if parts["b"] else empty["b"],
        names["b"],
        ms["a"],
        ms["b"],
    )


__all__ = [
    "CACHE_SIZE",
    "ModelPredictor",
    "PairResult",
    "Prediction",
    "Predictor",
    "PredictorCache",
    "PredictorFactory",
    "Scores",
    "TextReading",
    "compare_texts",
]
