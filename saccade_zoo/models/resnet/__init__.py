"""The ResNet family: ResNet-18 (He et al. 2016, torchvision's BasicBlock "v1" network), the full-image baseline of
the variational saccading paper, and its presets."""
from saccade_zoo.models.resnet.resnet import ResNet

__all__ = ["ResNet"]
