"""What a model can take as input, checked once where a model meets its tokenizer and data.

A tokenizer and a dataset can produce inputs a model has no embedding row or classifier
row for. Left alone, each is an ``IndexError`` deep inside the forward pass (or an opaque
device-side assert on a GPU). Every entry point (a job's steps, ``slimpajama eval``,
``predict`` and ``bench``, the Playground and Compare) builds a :class:`ModelInputs`
from the model and its tokenizer and encodes through it, so each kind is either fitted
to the model as ``transformers`` fits it or refused up front with a sentence:

* **Token ids.** A tokenizer with ids at or above the word embedding's ``vocab_size``
  (a tokenizer bigger than the model) is refused when the two meet, naming both sizes.
* **Segment (token-type) ids.** A RoBERTa model with ``type_vocab_size`` 1 reads every
  token as segment 0: RoBERTa's tokenizer returns no ``token_type_ids`` and
  ``transformers`` then uses zeros, so a BERT-style tokenizer's 1s for the second text of
  a pair are set to 0 here. A model with ``type_vocab_size`` 0 (ours only) has no
  segment embedding, so the ids are dropped. Any other segment id the table does not
  hold (a BERT model with one segment given a pair) is refused before training:
  ``transformers`` raises ``IndexError`` there. (A Hugging Face ``config.json`` with
  ``type_vocab_size`` 0, which transformers cannot run at all, is refused by
  :mod:`~slimpajama_gui.core.model.hf_config` when the model is opened.)
* **Positions.** A text longer than the position table holds (``max_position_embeddings``
  minus RoBERTa's offset of ``pad_token_id + 1``) is truncated to what the model takes,
  whatever the tokenizer's ``model_max_length`` says (often the 1e30 "unset" value),
  with data.py's truncation warning (D5). Pairs are cut longest-first.
* **Labels.** Label ids must lie inside the head
  (:func:`~slimpajama_gui.core.data.dataset.validate_labels`, D4). A trained head's classes are
  matched to the data's by name (:func:`match_label_order`): the same names in another
  order renumber the data, other names give a new head (reported), and a job may not
  score that untrained replacement before a step trains it. (A kept head that is not single-label, ``num_labels`` 1 or a
  ``problem_type`` other than single-label, is refused when the model is loaded.)

Example:
    >>> inputs = model_inputs(model, tokenizer, "tiny-roberta")  # doctest: +SKIP
    >>> enc = inputs.encode_split(dataset.train, tokenizer, 512)  # doctest: +SKIP
    >>> enc.max_length  # the position table holds 64 tokens
    64
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from slimpajama_gui.core import data as data_mod
from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.hf_config import specific_label_names


@dataclass(frozen=True)
class ModelInputs:
    """What one model can represent, from its config.

    Attributes:
        name: the model's name in sentences.
        max_position_embeddings: rows of the position table; None when unknown.
        position_offset: positions RoBERTa skips (``pad_token_id + 1``); 0 for BERT.
        max_tokens: the longest input the position table holds; None when unknown
            (an ONNX file without our metadata).
        vocab_size: rows of the word embedding; None when unknown.
        type_vocab_size: rows of the token-type (segment) embedding, 0 for none; None
            when unknown.
        roberta: positions are counted RoBERTa's way (segments are all 0 there).
    """

    name: str
    max_position_embeddings: int | None
    position_offset: int
    max_tokens: int | None
    vocab_size: int | None
    type_vocab_size: int | None
    roberta: bool

    @property
    def drops_token_types(self) -> bool:
        """True when the model is fed no segment ids (it reads every token as segment 0)."""
        return self.type_vocab_size == 0 or (self.roberta and self.type_vocab_size == 1)

    def fit_length(self, max_length: int) -> int:
        """``max_length`` cut to what the position table holds (tokens)."""
        return max_length if self.max_tokens is None else min(max_length, self.max_tokens)

    def length_note(self, max_length: int, setting: str) -> str | None:
        """A sentence for the user when ``setting`` asks for more tokens than fit, else None."""
        if self.fit_length(max_length) == max_length:
            return None
        where = f"max_position_embeddings {self.max_position_embeddings}"
        if self.position_offset:
            where += f" minus RoBERTa's offset of {self.position_offset}"
        return (
            f"{setting} is {max_length} tokens but {self.name} reads at most "
            f"{self.max_tokens} ({where}); longer texts are truncated to {self.max_tokens}."
        )

    def encode(
        self,
        texts: Sequence[str],
        tokenizer: Any,
        max_length: int,
        pairs: Sequence[str] | None = None,
    ) -> data_mod.Encoded:
        """:func:`~slimpajama_gui.core.data.batching.encode`, fitted to this model.

        Args:
            texts: N texts.
            tokenizer: the model's tokenizer.
            max_length: tokens asked for; cut to :attr:`max_tokens`.
            pairs: N second texts, or None.

        Returns:
            Token ids of at most ``fit_length(max_length)`` tokens per text, with the
            segment ids the model reads (None when it is fed none).

        Raises:
            UserError: the tokenizer gives a segment id the model has no row for, or
                its special tokens alone are more than the model reads.
        """
        limit = self.fit_length(max_length)
        enc = data_mod.encode(texts, tokenizer, limit, pairs)
        # A tokenizer asked for fewer tokens than its special tokens returns the text
        # uncut (it only logs), which the position table cannot take.
        if max(enc.lengths(), default=0) > limit:
            raise UserError(
                f"{self.name} reads at most {limit} tokens, fewer than its tokenizer needs "
                f"for the special tokens around {'a pair of texts' if pairs else 'a text'}; "
                "use a model with more positions (max_position_embeddings)."
            )
        if enc.token_type_ids is not None:
            if self.drops_token_types:
                enc.token_type_ids = None
            elif self.type_vocab_size is not None:
                top = max((max(t) for t in enc.token_type_ids if t), default=0)
                if top >= self.type_vocab_size:
                    raise UserError(self._segment_sentence(top, pairs is not None))
        return enc

    def encode_split(
        self, split: data_mod.Split, tokenizer: Any, max_length: int
    ) -> data_mod.Encoded:
        """:meth:`encode` for a split, naming it in the truncation warning."""
        enc = self.encode(split.texts, tokenizer, max_length, split.pairs)
        enc.warnings = [f"{split.name}: {w}" for w in enc.warnings]
        return enc

    def batch(
        self, texts: Sequence[str], tokenizer: Any, max_length: int
    ) -> tuple[dict[str, Any], list[str]]:
        """Padded tensors for single texts, as the predict paths feed a model.

        Returns:
            ``input_ids``, ``attention_mask`` and ``token_type_ids``, int64 (N, T), and
            the truncation warnings (sentences).
        """
        enc = self.encode(texts, tokenizer, max_length)
        examples = []
        for i, ids in enumerate(enc.input_ids):
            example: dict[str, Any] = {"input_ids": ids}
            if enc.token_type_ids is not None:
                example["token_type_ids"] = enc.token_type_ids[i]
            examples.append(example)
        return data_mod.collate(examples, tokenizer.pad_token_id or 0), enc.warnings

    def _segment_sentence(self, segment: int, pairs: bool) -> str:
        what = "the second text of each pair" if pairs else "some tokens"
        return (
            f"{self.name} has type_vocab_size {self.type_vocab_size} (segment ids below "
            f"{self.type_vocab_size}), but its tokenizer gives {what} segment id {segment}, "
            "which the model has no embedding for. For sentence pairs use a model with "
            "type_vocab_size 2 or more, or put both texts in one column and leave "
            "dataset.text_pair_column empty."
        )


def model_inputs(model: Any, tokenizer: Any, name: str) -> ModelInputs:
    """What ``model`` can represent, after checking that ``tokenizer`` fits it.

    Args:
        model: a :class:`~slimpajama_gui.core.model.encoder.EncoderClassifier` (float or
            quantized) or an :class:`~slimpajama_gui.core.runtime.onnx_runner.OnnxClassifier`.
        tokenizer: the tokenizer it will be fed by.
        name: the model's name in sentences.

    Raises:
        UserError: the tokenizer has ids at or above the model's ``vocab_size``.
    """
    config = getattr(model, "config", None)
    runner = getattr(model, "runner", None)  # an ONNX variant
    if config is not None:
        limit = config.max_position_embeddings - config.position_offset
        if runner is not None and runner.max_tokens is not None:
            limit = min(limit, runner.max_tokens)
        inputs = ModelInputs(
            name=name,
            max_position_embeddings=config.max_position_embeddings,
            position_offset=config.position_offset,
            max_tokens=limit,
            vocab_size=config.vocab_size,
            type_vocab_size=config.type_vocab_size,
            roberta=config.position_offset > 0,
        )
    else:
        limit = runner.max_tokens if runner is not None else None
        inputs = ModelInputs(name, limit, 0, limit, None, None, False)
    if inputs.vocab_size is not None:
        top, size = _tokenizer_ids(tokenizer)
        if top is not None and top >= inputs.vocab_size:
            raise UserError(
                f"the tokenizer of {name} has {size} tokens (ids up to {top}) but the model's "
                f"word embedding has vocab_size {inputs.vocab_size}, so ids from "
                f"{inputs.vocab_size} on have no embedding. Use the tokenizer that came with "
                "the model, or resize the model's embeddings to the tokenizer "
                "(resize_token_embeddings in transformers) and save it again."
            )
    return inputs


def _tokenizer_ids(tokenizer: Any) -> tuple[int | None, int]:
    """(highest id, number of tokens) of a tokenizer, added tokens included."""
    try:
        vocab = tokenizer.get_vocab()
    except (AttributeError, NotImplementedError):
        return None, 0
    ids = [i for i in vocab.values() if isinstance(i, int)]
    return (max(ids) if ids else None), len(vocab)


def _source_config(model: Any) -> dict[str, Any]:
    """The ``config.json`` the model was loaded from, or {} (built in memory, ONNX)."""
    from slimpajama_gui.core.model.checkpoints import read_config

    source = getattr(model, "source_path", None)
    if source is None or not (Path(source) / "config.json").is_file():
        return {}
    return read_config(Path(source))


def _label_key(name: str) -> str:
    return name.strip().casefold()


def head_label_names(folder: Path) -> list[str] | None:
    """The class names of the trained head saved in ``folder`` (see
    :func:`specific_label_names`); None for a bare encoder or placeholder names."""
    from slimpajama_gui.core.model.checkpoints import read_config

    if not (Path(folder) / "config.json").is_file():
        return None
    return specific_label_names(read_config(Path(folder)).get("id2label"))


def match_label_order(
    dataset: data_mod.TextDataset, head: Sequence[str] | None, name: str
) -> tuple[data_mod.TextDataset, str | None]:
    """Number the dataset's labels as the model's trained head numbers its classes.

    A head's row i means the class it was trained as id i; a dataset listing the same
    names in another order (``labels: [positive, negative]``) would otherwise be scored
    against the wrong rows and report, say, 7 % for a 93 % model. Names are compared
    without case or surrounding spaces.

    Args:
        dataset: the loaded dataset.
        head: the head's class names in id order (:func:`head_label_names`), or None.
        name: the model's name in sentences.

    Returns:
        The dataset, renumbered when only the order differed, and a note saying so
        (None when nothing changed). Other names are left for the loader, which gives
        the model a new head.
    """
    mine = list(dataset.label_names)
    if head is None or len(head) != len(mine):
        return dataset, None
    by_key = {_label_key(n): i for i, n in enumerate(head)}
    if len(by_key) != len(head) or sorted(by_key) != sorted(_label_key(n) for n in mine):
        return dataset, None
    new_id = [by_key[_label_key(n)] for n in mine]  # old id -> the head's id
    if new_id == list(range(len(mine))):
        return dataset, None
    names = list(head)

    def renumber(split: data_mod.Split) -> data_mod.Split:
        return replace(split, labels=[new_id[y] for y in split.labels], label_names=names)

    test = renumber(dataset.test) if dataset.test is not None else None
    renumbered = replace(
        dataset,
        train=renumber(dataset.train),
        eval=renumber(dataset.eval),
        test=test,
        label_names=names,
    )
    note = (
        f"the dataset lists its labels as {_names(mine)} but {name}'s classifier was trained "
        f"with them in the order {_names(names)}; they are matched by name."
    )
    return renumbered, note


def _names(labels: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(repr(x) for x in labels[:limit])
    return shown + (f", … ({len(labels) - limit} more)" if len(labels) > limit else "")


def _replaced_labels(model: Any) -> list[str] | None:
    """The label names of a trained head the loader set aside for a new one, else None."""
    report = getattr(model, "load_report", None)
    if report is None or "classifier.weight" not in report.ignored_keys:
        return None
    id2label = _source_config(model).get("id2label")
    if isinstance(id2label, dict) and id2label:
        try:
            return [str(id2label[k]) for k in sorted(id2label, key=int)]
        except (TypeError, ValueError):
            pass
    # transformers 5 leaves default names out of config.json; the weights tell the rows.
    from slimpajama_gui.core.model.inspection import inspect_model

    rows = inspect_model(model.source_path).num_labels or 0
    return [f"LABEL_{i}" for i in range(rows)]


def check_job_inputs(
    model: Any,
    tokenizer: Any,
    dataset: data_mod.TextDataset,
    *,
    name: str,
    max_length: int,
    setting: str = "dataset.max_length",
    first_label_step: str | None = None,
) -> tuple[ModelInputs, list[str]]:
    """Every check of a model against a dataset, before anything runs.

    Args:
        model: the loaded model (its classifier sized for ``dataset``).
        tokenizer: its tokenizer.
        dataset: the loaded, label-checked dataset.
        name: the model's name in sentences.
        max_length: the tokens per text asked for by ``setting``.
        setting: where ``max_length`` comes from, for the sentence.
        first_label_step: the first step that uses the classifier's outputs before any
            training (e.g. "step 1 'evaluate'"), or None if training comes first.

    Returns:
        The model's inputs and notes for the user (``max_length`` cut to the model).

    Raises:
        UserError: tokens, segment ids or labels the model cannot represent (see the
            module docstring).
    """
    inputs = model_inputs(model, tokenizer, name)
    data_mod.validate_labels(dataset, model.config.num_labels)
    old = _replaced_labels(model)
    if old is not None and first_label_step is not None:
        had = f"{len(old)} labels ({_names(old)})" if old else "other labels"
        raise UserError(
            f"{name}'s classifier head was trained for {had} but the dataset has "
            f"{dataset.num_labels} ({_names(dataset.label_names)}), so it gets a "
            f"new, untrained head, which {first_label_step} would use before any training. "
            "Put a finetune step first, or use data with the model's labels (dataset.labels "
            "lists them in the head's order)."
        )
    # Segment ids and special tokens depend on the layout (one text or a pair), not on
    # the words, so one row shows what every row will give.
    train = dataset.train
    inputs.encode(train.texts[:1], tokenizer, max_length, train.pairs[:1] if train.pairs else None)
    note = inputs.length_note(max_length, setting)
    return inputs, [note] if note else []
