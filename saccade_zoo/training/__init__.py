"""Training: the Saccader paper's losses, keyed sampling, the staged train steps, schedules and callbacks."""
from saccade_zoo.training.losses import (aggregated_cross_entropy, l2_penalty, location_targets,
                                         reinforce_loss)
from saccade_zoo.training.staged import STAGES, StagedTrainingMixin

__all__ = ["STAGES", "StagedTrainingMixin", "aggregated_cross_entropy", "l2_penalty", "location_targets",
           "reinforce_loss"]
