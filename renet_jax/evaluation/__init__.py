"""Measuring a model: the one prediction path from stored images to outputs
(`predictor`), the evaluators a run is configured with (`evaluators`), and the metrics
(`metrics`: confusion matrices, accuracies, IoU)."""
