"""The recurrent attention model (RAM, Mnih et al. 2014): ``model.py`` (`RAM`), its layers ``layers.py``
(`GlimpseNetwork`, `LocationNetwork`), the base it shares with DRAM ``base.py`` (`RecurrentAttentionModel`: the
glimpse loop, the Gaussian location policy, the hybrid REINFORCE stage), its loss terms ``losses.py`` and its
presets ``presets.py``."""
from saccade_zoo.models.ram.base import RecurrentAttentionModel
from saccade_zoo.models.ram.layers import GlimpseNetwork, LocationNetwork, RandomLocations, Zeros
from saccade_zoo.models.ram.model import RAM

__all__ = ["GlimpseNetwork", "LocationNetwork", "RAM", "RandomLocations", "RecurrentAttentionModel", "Zeros"]
