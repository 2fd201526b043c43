"""The ResNet family: ResNet-18 (He et al. 2016, torchvision's BasicBlock "v1" network), the full-image baseline of
the variational saccading paper, and its presets."""
from saccade_zoo.models.resnet.resnet import ResNet

__all__ = ["ResNet"]

# The paper's large-image baseline: ResNet-18 over a grid of crops (144 crops of 224 px of a 2528x2528 image).
from saccade_zoo.models.resnet.crops import CropGrid, CropResNet, CropSum, crop_offsets  # noqa: E402

__all__ += ["CropGrid", "CropResNet", "CropSum", "crop_offsets"]
