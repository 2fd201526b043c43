"""Reusable Keras layers of the zoo (registered serializable under "saccade_zoo")."""
from saccade_zoo.layers.attention import AttentionNetwork
from saccade_zoo.layers.bagnet_block import BagNetBlock
from saccade_zoo.layers.glimpse_readout import GlimpseReadout
from saccade_zoo.layers.policies import POLICIES, EngineeredPolicy
from saccade_zoo.layers.saccader_cell import SaccaderCell

__all__ = ["AttentionNetwork", "BagNetBlock", "EngineeredPolicy", "GlimpseReadout", "POLICIES", "SaccaderCell"]
