"""Training: loss terms shared by the families, keyed sampling, the staged train steps (each model declares its
stages), the divergence guard, resumable stage runs and distribution helpers."""
from saccade_zoo.training.guard import DivergenceGuard, TrainingDiverged
from saccade_zoo.training.losses import aggregated_cross_entropy, correct, l2_penalty, penalised_kernels
from saccade_zoo.training.staged import Stage, StagedTrainingMixin

__all__ = ["DivergenceGuard", "Stage", "StagedTrainingMixin", "TrainingDiverged", "aggregated_cross_entropy",
           "correct", "l2_penalty", "penalised_kernels"]
