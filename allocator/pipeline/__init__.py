"""The application: model and board in, per-layer bits, predicted cost, accuracy and a bit-exactness proof out."""

from allocator.pipeline.run import (
    Baseline,
    PipelineResult,
    predicted_uniform,
    quantized_accuracy,
    run_pipeline,
    score_options,
)

__all__ = ["Baseline", "PipelineResult", "predicted_uniform", "quantized_accuracy", "run_pipeline", "score_options"]
