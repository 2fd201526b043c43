"""BagNet presets: BagNet-9/17/33/77-lowD on ImageNet, and the narrow BagNet-33 of the cluttered 100x100 presets."""
from saccade_zoo.models.bagnet.backbone import KERNEL3, BagNet
from saccade_zoo.registry import IMAGENET_MEAN, IMAGENET_STD, register_preset

IMAGENET = {"image_size": [224, 224], "channels": 3, "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
            "value_range": [0, 1]}
GREY100 = {"image_size": [100, 100], "channels": 1, "mean": (0.0,), "std": (1.0,), "value_range": [0, 1]}

# Small geometry for grayscale 100x100 cluttered digits/clothes: BagNet-33 (9x9 grid, 33 px glimpses at stride 8,
# an item is 28 px) at reduced width so that training fits a 2-core CPU. Shared by the Saccader family's presets.
SMALL_BAGNET33 = dict(image_shape=(100, 100, 1), num_classes=10, blocks=(2, 2, 2, 2), planes=(16, 32, 64, 128),
                      kernel3=KERNEL3[33], stem_filters=16, lowd_dim=128)

for _field, _kernel3 in KERNEL3.items():
    register_preset(
        f"bagnet{_field}_lowd_imagenet", BagNet,
        f"BagNet-{_field}-lowD on 224x224 RGB ImageNet, 1001 classes (label 0 reserved)", IMAGENET,
        image_shape=(224, 224, 3), num_classes=1001, kernel3=_kernel3)

register_preset("bagnet33_cluttered100", BagNet,
                "Narrow BagNet-33-lowD for 100x100 grayscale cluttered digits, 10 classes", GREY100, **SMALL_BAGNET33)
