"""The BagNet family (Brendel & Bethge 2019, in the Saccader's lowD form): the backbone, its block layer, presets."""
from saccade_zoo.models.bagnet.blocks import BagNetBlock

__all__ = ["BagNetBlock"]
