"""The Saccader family (Elsayed et al. 2019): the model, its own layers (attention network, Saccader cell, glimpse
readout, engineered policies), its loss terms and presets."""
from saccade_zoo.models.saccader.attention import AttentionNetwork
from saccade_zoo.models.saccader.cell import SaccaderCell
from saccade_zoo.models.saccader.classifier import SaccaderWithClassifier
from saccade_zoo.models.saccader.policies import POLICIES, EngineeredPolicy
from saccade_zoo.models.saccader.readout import GlimpseReadout

__all__ = ["AttentionNetwork", "EngineeredPolicy", "GlimpseReadout", "POLICIES", "SaccaderCell",
           "SaccaderWithClassifier"]
