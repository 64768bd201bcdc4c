"""Quantization: methods, quantized modules, the accuracy guard and quantized folders.

The modules, from the bottom up: :mod:`.int8_path` (which int8 arithmetic this CPU
runs; no torch, imported with ``slimpajama_gui.core``), :mod:`.modules` (the quantized
building blocks), :mod:`.methods` (the registry of methods and ``quantize_model``),
:mod:`.folders` (save / load) and :mod:`.guard` (``guard_quantization``). This file
imports none of them, so ``int8_path`` stays free of torch.
"""
