"""The application: model and board in, per-layer bits, predicted cost, accuracy and a bit-exactness proof out."""

from allocator.pipeline.meter import StageMeter, StageRecord
from allocator.pipeline.run import (
    Baseline,
    PipelineConfig,
    PipelineResult,
    predicted_uniform,
    quantized_accuracy,
    run_pipeline,
    run_stages,
    score_options,
    sized_config,
)

__all__ = [
    "Baseline",
    "PipelineConfig",
    "PipelineResult",
    "StageMeter",
    "StageRecord",
    "predicted_uniform",
    "quantized_accuracy",
    "run_pipeline",
    "run_stages",
    "score_options",
    "sized_config",
]
