"""Reusable Keras layers of the zoo (registered serializable under "saccade_zoo").

Shared tensor helpers (one_hot, argmax_last, mask_visited) live in `saccade_zoo.layers.ops`; the one glimpse
sampler of the continuous-location families (crop-and-resize of pixel boxes, the multi-scale retina, coordinate
conversions) in `saccade_zoo.layers.glimpse`.
"""
from saccade_zoo.layers.attention import AttentionNetwork
from saccade_zoo.layers.bagnet_block import BagNetBlock
from saccade_zoo.layers.glimpse import GlimpseSampler, Retina
from saccade_zoo.layers.glimpse_readout import GlimpseReadout
from saccade_zoo.layers.policies import POLICIES, EngineeredPolicy
from saccade_zoo.layers.saccader_cell import SaccaderCell

__all__ = ["AttentionNetwork", "BagNetBlock", "EngineeredPolicy", "GlimpseReadout", "GlimpseSampler", "POLICIES",
           "Retina", "SaccaderCell"]
