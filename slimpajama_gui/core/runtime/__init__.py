"""Running a model: loading any variant, ONNX Runtime, inputs, evaluation, benchmarks."""
