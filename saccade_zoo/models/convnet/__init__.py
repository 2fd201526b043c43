"""The ConvNet family: small full-image CNN classifiers (the occlusion judge of the Saccader paper's section 4.2,
the RAM paper's ConvNet baseline) and their presets."""
from saccade_zoo.models.convnet.convnet import ConvNet

__all__ = ["ConvNet"]
