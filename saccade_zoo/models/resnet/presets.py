"""ResNet-18 presets: torchvision's ResNet-18 on ImageNet, the variational saccading paper's "ResNet-18 - full
image" baseline on 100x100 cluttered digits (one item, two items' sum, two items' identification), and its
large-image baseline, ResNet-18 over 144 crops of 224 px of 2528x2528 images (two-item identification, photos)."""
from saccade_zoo.data.cluttered import ClutteredConfig, class_names
from saccade_zoo.models.bagnet.presets import GREY100, IMAGENET
from saccade_zoo.models.resnet.resnet import ResNet
from saccade_zoo.registry import register_preset

RESNET18 = dict(blocks=(2, 2, 2, 2), filters=(64, 128, 256, 512))

# The paper's baseline at 100x100 (Ramapuram et al., Table 1: "ResNet-18 - full image", 99.86% two-digit sum and
# 97.4% two-digit identification): the unchanged ResNet-18 with its "imagenet" stem (7x7 stride-2 conv + 3x3
# stride-2 max-pool: 100 -> 50 -> 25, then stages at 25, 13, 7 and 4, a 4x4x512 final map; every unit of the last
# stage sees the whole canvas). That is what "ResNet-18" names, and it keeps the cost CPU-sized: 0.43G
# multiply-adds per 100x100 image, against 5.5G (13x: stage 1 at 100x100 instead of 25x25, a 13x13 final map) with
# the CIFAR-style "small" stem, which is meant for 32x32 images. Measured: one SGD step of 32 images took 2.2 s on 2
# shared CPU cores (oneDNN off), about 23 minutes per epoch of 20,000 canvases; the "small" stem would take hours.
CLUTTERED100 = dict(image_shape=(100, 100, 1), stem="imagenet", **RESNET18)

register_preset("resnet18_imagenet", ResNet,
                "ResNet-18 (He et al. 2016, torchvision's BasicBlock network), 224x224 RGB, 1000 classes "
                "(11,689,512 trainable parameters as torchvision)", IMAGENET,
                image_shape=(224, 224, 3), num_classes=1000, stem="imagenet", **RESNET18)
# Class names: the single-item and identification presets name none (the items are digits or Fashion-MNIST
# clothes depending on the data: tools/train.py passes the data's names); the sum's classes are the sums.
register_preset("resnet18_cluttered100", ResNet,
                "ResNet-18 on the full 100x100 grayscale cluttered image, 10 classes (one item)", GREY100,
                task="single", num_classes=10, **CLUTTERED100)
register_preset("resnet18_cluttered100_sum", ResNet,
                "ResNet-18 on the full 100x100 grayscale cluttered image: sum of two items, 19 classes (the "
                "variational saccading paper's baseline: 99.86% on two-digit MNIST sums)", GREY100,
                class_names=class_names(ClutteredConfig(task="sum", num_items=2)), task="sum", num_classes=19,
                **CLUTTERED100)
register_preset("resnet18_cluttered100_identify", ResNet,
                "ResNet-18 on the full 100x100 grayscale cluttered image: identify two items, 10 sigmoid outputs, "
                "multi-hot labels (the variational saccading paper's baseline: 97.4% on two-digit MNIST)", GREY100,
                task="identify", num_classes=10, activation="sigmoid", **CLUTTERED100)

from saccade_zoo.models.resnet.crops import CropResNet  # noqa: E402

# The paper's large-image baseline (Ramapuram et al., Section 4.1 and Table 1, "resnet18 - 144 crops", 11.4M
# parameters): the 2528x2528 image cut into a 12 x 12 grid of 224x224 crops (offsets round(i * 2304 / 11): 0, 209,
# ..., 2304; neighbours overlap by 14-15 px), ResNet-18 (torchvision's, 512 "logits" per crop) on every crop, the
# crops' logits summed, one dense layer to the classes. See saccade_zoo.models.resnet.crops.CropResNet for the
# reading of "sum the logits, dense head" and its count: 11,438,026 trainable (1 channel, 10 classes). Activations
# are 144 times a ResNet-18 pass at 224 per image (262G multiply-adds): GPU-sized.
CROPS144 = dict(image_shape=(2528, 2528, 1), crop_size=224, grid=12, crop_units=512, stem="imagenet", **RESNET18)

register_preset("resnet18_crops144_cluttered2528_identify", CropResNet,
                "ResNet-18 over 144 crops of 224 px of a 2528x2528 grayscale cluttered image, crop logits summed, "
                "dense head: identify two items, 10 sigmoid outputs, multi-hot labels (the variational saccading "
                "paper's large-image baseline: 97.3% on two-digit MNIST; 11,438,026 trainable parameters)",
                {**GREY100, "image_size": [2528, 2528]}, task="identify", num_classes=10, activation="sigmoid",
                **CROPS144)
register_preset("resnet18_crops144_photo", CropResNet,
                "ResNet-18 over 144 crops of 224 px of a 2528x2528 RGB photograph, crop logits summed, dense head, "
                "6 classes (the variational saccading paper's MIT-Adobe 5k baseline: 63.6%; 11,442,246 trainable "
                "parameters)", {**IMAGENET, "image_size": [2528, 2528]},
                class_names=["abstract", "animals", "man-made", "nature", "none", "people"], num_classes=6,
                **{**CROPS144, "image_shape": (2528, 2528, 3)})
# The megapixel task's tiled full-resolution baseline: ResNet-18 over a 7 x 7 grid of 224 px crops of the 1500x1500
# canvas (offsets round(i * 1276 / 6), neighbours overlapping by 11-12 px), crop logits summed, dense head.
register_preset("resnet18_crops49_megapixel", CropResNet,
                "ResNet-18 over 49 crops of 224 px of a 1500x1500 megapixel-task canvas, crop logits summed, dense "
                "head, 10 classes (the tiled full-resolution baseline)", {**GREY100, "image_size": [1500, 1500]},
                task="single", num_classes=10, **dict(CROPS144, image_shape=(1500, 1500, 1), grid=7))
