"""The deep recurrent attention model (DRAM, Ba et al. 2015) and the Saccader authors' ImageNet DRAM: ``model.py``
(`DRAM`, on the loop and training stage it shares with RAM, `saccade_zoo.models.ram.RecurrentAttentionModel`), its
layers ``layers.py`` (`DRAMGlimpseNetwork`, `ContextNetwork`) and its presets ``presets.py``."""
from saccade_zoo.models.dram.layers import ContextNetwork, DRAMGlimpseNetwork
from saccade_zoo.models.dram.model import DRAM

__all__ = ["ContextNetwork", "DRAM", "DRAMGlimpseNetwork"]
