"""The techniques page's group boxes, built onto the page.

Each ``add_*`` function makes one box (or a few) of
:class:`~slimpajama_gui.qt.wizard.techniques_page.TechniquesPage` with its knobs and
sets them as the page's attributes (``page.distill_box``, ``page.hidden_mse``, ...).
The page lays them out in columns and connects their signals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QWidget,
)

from slimpajama_gui.core.plan.search_step import Search
from slimpajama_gui.core.plan.static_step import DistillStatic
from slimpajama_gui.core.plan.steps import (
    KD_WEIGHT,
    KEEP_GENERAL,
    TEMPERATURE,
    Distill,
    Prune,
    Quantize,
    Sensitivity,
)
from slimpajama_gui.core.units import TOLERANCE_LABEL
from slimpajama_gui.qt.wizard.widgets import (
    NOTE_STYLE,
    LayerPicker,
    amount_row,
    combo_box,
    double_spin,
    group_box,
    int_spin,
    make_label,
    percent_spin,
    scope_combo,
    vbox,
)

if TYPE_CHECKING:
    from slimpajama_gui.qt.wizard.techniques_page import TechniquesPage


def add_search_box(page: TechniquesPage) -> None:
    """The "Find the best within N points" box (the search step): hidden until chosen."""
    page.search_box = group_box("Find the best within N points",
                                "A budgeted search over the techniques below")  # fmt: skip
    page.search_box.setCheckable(False)
    # Every number's range is its recipe key's (the step class's bounds); what is
    # typical shows only in the arrows' step.
    page.search_budget = double_spin("Accuracy budget", Search.bounds["budget_points"],
                                     1.0, decimals=1, step=0.5,
                                     suffix=" points", singular=" point",
                                     tip="Accuracy on the eval split the result may lose "
                                     "against the model it starts from")  # fmt: skip
    page.search_minutes = double_spin("Time budget",
                                      Search.bounds["time_budget_s"].per(60), 30,
                                      decimals=0, step=5,
                                      suffix=" min",
                                      tip="Wall-clock time of the whole search; when it "
                                      "ends, the best model found so far is the result")  # fmt: skip
    page.search_objective = combo_box(
        [("latency", "Fastest (batch-1 latency on this CPU)"),
         ("size", "Smallest (size on disk)")],
        tip="What 'best' means among the models within the budget",
    )  # fmt: skip
    search_form = QFormLayout(page.search_box)
    search_form.addRow("Accuracy budget:", page.search_budget)
    search_form.addRow("Time budget:", page.search_minutes)
    search_form.addRow("Objective:", page.search_objective)
    page.search_box.hide()


def add_finetune_box(page: TechniquesPage) -> None:
    """Fine-tune."""
    page.finetune_box = group_box("Fine-tune", "Train the whole model on your data first")
    page.finetune_note = make_label("Trains the whole model on your data first.", NOTE_STYLE)
    vbox(page.finetune_box).addWidget(page.finetune_note)


def add_sensitivity_box(page: TechniquesPage) -> None:
    """Sensitivity analysis, with its eval rows."""
    page.sensitivity_box = group_box(
        "Sensitivity analysis",
        "Before compressing: measure what dropping each layer, removing each attention "
        "head and FFN block, and int8 on each linear costs in eval loss and accuracy. "
        "Shown as a heat map while it runs; a quantize step right after uses it to "
        "choose which linears stay in float.",
    )
    page.sensitivity_box.setChecked(False)
    page.sensitivity_rows = int_spin("Sensitivity analysis — eval rows",
                                     Sensitivity.bounds["rows"], Sensitivity().rows,
                                     step=64,
        tip="Eval rows sampled (seeded); every measurement runs the model over them once")  # fmt: skip
    rows_line = QHBoxLayout()
    rows_line.addWidget(QLabel("Measured on"))
    rows_line.addWidget(page.sensitivity_rows)
    rows_line.addWidget(QLabel("eval rows"))
    rows_line.addStretch(1)
    vbox(page.sensitivity_box).addLayout(rows_line)


def add_distill_box(page: TechniquesPage) -> None:
    """Distill: a layer student or static embeddings, and their knobs."""
    page.distill_box = group_box(
        "Distill into a smaller student",
        "Build a shallower student from some of the teacher's layers and train it to "
        "imitate the teacher",
    )
    page.student_kind = combo_box(
        [("layers", "Teacher layers"), ("static", "Static embeddings (Model2Vec)")],
        "Teacher layers: a shallower transformer. Static embeddings: one vector per "
        "token, averaged, then a linear classifier",
    )
    page.static_note = make_label(
        "Very fast (a lookup and an average per sentence, no attention), less accurate: "
        "expect several points below the teacher.",
        NOTE_STYLE,
    )
    page.static_dims = int_spin("Dimensions", DistillStatic.bounds["dims"], 256,
        tip="Width of each token vector (PCA components of the teacher's)")  # fmt: skip
    page.static_storage = combo_box(
        [("int8", "int8"), ("float16", "float16"), ("float32", "float32")],
        "How the vectors are stored: int8 (one scale per row) is 4x smaller than float32",
    )
    page.static_form = QWidget()
    static_form = QFormLayout(page.static_form)
    static_form.setContentsMargins(0, 0, 0, 0)
    static_form.addRow("Dimensions:", page.static_dims)
    static_form.addRow("Storage:", page.static_storage)
    page.student_picker = LayerPicker("kept in the student")
    # Both students' temperature and KD weight: Distill's and DistillStatic's.
    page.temperature = double_spin("Temperature", TEMPERATURE, 2.0, decimals=1, step=0.5,
                             tip="Temperature: softens both models' outputs for the "
                             "KD loss")  # fmt: skip
    page.alpha_kd = double_spin("KD weight", KD_WEIGHT, 0.5, step=0.1,
                          tip="Weight of the teacher's soft labels (KD); the rest goes to "
                          "the true labels")  # fmt: skip
    # Sized for weights up to 100 (two of them share a row with their labels).
    page.hidden_mse = double_spin("Hidden MSE", Distill.bounds["hidden_mse"], 0.0, step=0.5,
                            widest=100,
                            tip="Weight of matching the teacher's hidden states layer by "
                            "layer (1.0 helped on SST-2)")  # fmt: skip
    page.attention_mse = double_spin("Attention MSE", Distill.bounds["attention_mse"], 0.0,
                               step=0.5, widest=100,
                               tip="Weight of matching the teacher's attention maps")  # fmt: skip
    page.student_ffn = percent_spin("FFN removed", Distill.bounds["ffn_fraction"], 0,
                                    "Share of each student layer's FFN neurons removed "
                                    "before distillation (the least important by "
                                    "gradient score): a smaller student")  # fmt: skip
    page.augment = int_spin("Augmented copies", Distill.bounds["augment"], 0,
        tip="Altered copies of each train row, "
        "with 30 % of their words swapped for near neighbours, that learn from the teacher's "
        "logits: the student stays closer to the teacher on text unlike the train set. Each "
        "copy is one more pass of training.")  # fmt: skip
    knobs = QGridLayout()
    # Labels that wrap: on one line, "Augmented copies:" and "Attention MSE:" made the
    # first column scroll sideways in a 960 px wide wizard.
    knobs.addWidget(make_label("Temperature:"), 0, 0)
    knobs.addWidget(page.temperature, 0, 1)
    knobs.addWidget(make_label("KD weight:"), 0, 2)
    knobs.addWidget(page.alpha_kd, 0, 3)
    page.state_knobs = [make_label("Hidden MSE:"), page.hidden_mse,
                        make_label("Attention MSE:"), page.attention_mse,
                        make_label("FFN removed:"), page.student_ffn,
                        make_label("Augmented copies:"), page.augment]  # fmt: skip
    for i, widget in enumerate(page.state_knobs):
        # Two knobs a row: a third pushed the Quantize column out of the window.
        knobs.addWidget(widget, 1 + i // 4, i % 4)
    knobs.setColumnStretch(4, 1)
    distill_layout = vbox(page.distill_box)
    kind_row = QHBoxLayout()
    kind_row.addWidget(QLabel("Student:"))
    kind_row.addWidget(page.student_kind)
    kind_row.addStretch(1)
    distill_layout.addLayout(kind_row)
    distill_layout.addWidget(page.static_note)
    distill_layout.addWidget(page.static_form)
    page.picker_label = make_label("Teacher layers; pressed ones are kept:")
    distill_layout.addWidget(page.picker_label)
    distill_layout.addWidget(page.student_picker)
    distill_layout.addLayout(knobs)


def add_layers_box(page: TechniquesPage) -> None:
    """Drop whole layers."""
    page.layers_box = group_box("Drop whole layers", "Remove encoder layers, then recover")
    page.keep_picker = LayerPicker("kept")
    vbox(page.layers_box).addWidget(page.keep_picker)


def add_prune_boxes(page: TechniquesPage) -> None:
    """Prune attention heads, FFN neurons, weights (unstructured) and vocabulary."""
    page.heads_box = group_box("Prune attention heads",
                            "Remove the least important heads; one always stays per layer")  # fmt: skip
    page.heads_amount = percent_spin("Prune attention heads", Prune.bounds["amount"], 30,
                                     "Share of all attention heads removed")  # fmt: skip
    page.heads_scope = scope_combo("heads")
    amount_row(page.heads_box, "Remove", page.heads_amount, page.heads_scope)

    page.ffn_box = group_box("Prune FFN neurons", "Remove the least important FFN neurons")
    page.ffn_amount = percent_spin("Prune FFN neurons", Prune.bounds["amount"], 50,
                                   "Share of all feed-forward neurons removed")  # fmt: skip
    page.ffn_scope = scope_combo("neurons")
    amount_row(page.ffn_box, "Remove", page.ffn_amount, page.ffn_scope)

    page.magnitude_box = group_box(
        "Prune weights (unstructured)",
        "Zero the smallest weights of the encoder's linear layers. The file keeps its "
        "size; sparse runtimes can use the zeros.",
    )
    page.magnitude_amount = percent_spin("Prune weights", Prune.bounds["amount"], 50,
                                         "Share of encoder weights set to zero")  # fmt: skip
    page.magnitude_scope = scope_combo("weights")
    page.magnitude_schedule = combo_box(
        [("oneshot", "all at once"), ("gradual", "gradually")],
        "Gradual pruning raises sparsity step by step during the recovery training",
    )
    mag_layout = amount_row(page.magnitude_box, "Zero", page.magnitude_amount, page.magnitude_scope)
    schedule_row = QHBoxLayout()
    schedule_row.addWidget(QLabel("Schedule:"))
    schedule_row.addWidget(page.magnitude_schedule)
    schedule_row.addStretch(1)
    mag_layout.addLayout(schedule_row)

    page.vocab_box = group_box(
        "Prune vocabulary",
        "Keep the tokens the training data uses and the tokenizer's most common ones",
    )
    page.vocab_general = int_spin(
        "Common tokens kept", Prune.bounds["keep_general"], KEEP_GENERAL, step=1000
    )
    # One change per edit, not per keystroke: each value starts a vocabulary count.
    page.vocab_general.setKeyboardTracking(False)
    page.vocab_general.setToolTip(
        "keep_general: how many of the tokenizer's most common tokens to keep besides "
        "those the training texts use, so text from other domains still reads as whole "
        "words (single characters first, then the tokens of the most frequent English "
        "words; 20,000 keep about 19,000 words whole). 0 keeps only the training texts' tokens (smallest, but out-of-domain "
        "words then read as other pieces or [UNK])."
    )
    general_row = QHBoxLayout()
    # Wraps: on one line it was the widest thing in the middle column.
    general_row.addWidget(make_label("Also keep the most common tokens:"))
    general_row.addWidget(page.vocab_general)
    general_row.addStretch(1)
    vocab_layout = vbox(page.vocab_box)
    vocab_layout.addLayout(general_row)
    vocab_layout.addWidget(
        make_label(
            "Keeps the token ids the training texts use and that many common ones; "
            "other words read as smaller pieces, or [UNK].",
            NOTE_STYLE,
        )
    )


def add_quantize_box(page: TechniquesPage) -> None:
    """Quantize."""
    page.quant_box = group_box("Quantize", "Store (and compute) the weights in fewer bits")
    page.quant_method = combo_box(
        [
            ("dynamic_int8", "dynamic int8"),
            ("weight_int8", "weight-only int8"),
            ("weight_int4", "weight-only int4"),
            ("fp16", "fp16"),
            ("bf16", "bf16"),
        ],
        "dynamic int8: fast on CPU; weight-only int8/int4: smaller files, dequantized at "
        "run time; fp16/bf16: half precision (fp16 is for GPUs)",
    )
    page.quant_backend = combo_box(
        [("onnxruntime", "onnxruntime"), ("pytorch", "PyTorch")],
        "onnxruntime: exports to ONNX, the fastest on CPU, dynamic int8 only. "
        "PyTorch: every method, with an accuracy guard",
    )
    page.per_channel = QCheckBox("Per-channel scales")
    page.per_channel.setChecked(True)
    page.per_channel.setToolTip("One scale per output channel: more accurate, same speed")
    page.quant_embeddings4 = QCheckBox("4-bit word embeddings")
    page.quant_embeddings4.setToolTip(
        "onnxruntime backend: store the word-embedding table in 4 bits (blocks of 32 with "
        "their own scale), about half its int8 size; the linear layers stay int8"
    )
    page.quant_embeddings = QCheckBox("Quantize embeddings")
    page.quant_embeddings.setChecked(True)
    page.quant_embeddings.setToolTip(
        "The word-embedding table is often half of a small model (PyTorch backend; "
        "onnxruntime always quantizes it)"
    )
    page.tolerance = double_spin(TOLERANCE_LABEL, Quantize.bounds["tolerance"], 1.0,
                           decimals=1, step=0.5,
                           suffix=" pt", tip="Accuracy guard: the most accuracy (in points) this step "
                           "may cost. A larger drop counts only when it is beyond the eval "
                           "set's noise (McNemar's test on the rows int8 changed); then "
                           "sensitive layers stay in float (for onnxruntime, PyTorch's "
                           "int8) until it passes, else the step fails")  # fmt: skip
    quant_form = QFormLayout(page.quant_box)
    quant_form.addRow("Method:", page.quant_method)
    quant_form.addRow("Backend:", page.quant_backend)
    quant_form.addRow(page.per_channel)
    quant_form.addRow(page.quant_embeddings)
    quant_form.addRow(page.quant_embeddings4)
    quant_form.addRow(f"{TOLERANCE_LABEL}:", page.tolerance)


def add_measure_box(page: TechniquesPage) -> None:
    """Measure the result: accuracy, size and CPU latency."""
    page.measure_box = QGroupBox("Measure the result")
    page.evaluate_check = QCheckBox("Accuracy on the eval split")
    page.evaluate_check.setChecked(True)
    page.benchmark_check = QCheckBox("Size and CPU latency")
    page.benchmark_check.setChecked(True)
    measure_layout = vbox(page.measure_box)
    measure_layout.addWidget(page.evaluate_check)
    measure_layout.addWidget(page.benchmark_check)
