"""Saccader presets (and the engineered-policy baselines on the same BagNets, and the Saccader with a separate
classification network of the paper's section 4.3)."""
import keras

from saccade_zoo.models.bagnet.backbone import BagNet
from saccade_zoo.models.bagnet.presets import GREY100, IMAGENET, SMALL_BAGNET33
from saccade_zoo.models.convnet.convnet import ConvNet
from saccade_zoo.models.saccader.classifier import SaccaderWithClassifier, default_patch_size
from saccade_zoo.models.saccader.saccader import PolicyClassifier, Saccader
from saccade_zoo.registry import register_preset

# BagNet constructor arguments; the rest of a preset's config goes to the glimpse model.
_BACKBONE_KEYS = ("image_shape", "num_classes", "blocks", "planes", "kernel3", "strides", "stem_filters",
                  "expansion", "lowd_dim", "bn_momentum", "bn_epsilon", "synchronized_bn", "activation", "dtype")


def _with_backbone(model_class):
    """A builder that makes the BagNet from the backbone keys of the config and the model from the rest."""

    def builder(**config):
        backbone = BagNet(name="bagnet", **{k: config.pop(k) for k in _BACKBONE_KEYS if k in config})
        return model_class(backbone, **config)

    builder.__name__ = f"build_{model_class.__name__.lower()}"
    return builder


build_saccader, build_policy_classifier = _with_backbone(Saccader), _with_backbone(PolicyClassifier)


def _with_classifier(make_classifier):
    """A builder of a `SaccaderWithClassifier`: the Saccader from the Saccader keys of the config on
    ``saccader_image_shape`` images (default: ``image_shape``, no resize), then ``make_classifier(patch_shape,
    num_classes, activation)`` for the patches (side: ``patch_size`` or the box side in ``image_shape`` pixels)."""

    def builder(image_shape, saccader_image_shape=None, patch_size=None, metadata=None,
                name="saccader_with_classifier", **config):
        saccader = build_saccader(image_shape=saccader_image_shape or image_shape, **config)
        side = default_patch_size(saccader, image_shape) if patch_size is None else patch_size
        side = tuple(side) if isinstance(side, (list, tuple)) else (int(side), int(side))
        classifier = make_classifier((*side, int(image_shape[-1])), saccader.num_classes, saccader.activation)
        return SaccaderWithClassifier(saccader, classifier, image_shape=image_shape, patch_size=side,
                                      metadata=metadata, name=name)

    builder.__name__ = f"build_saccader_{make_classifier.__name__}"
    return builder


def nasnet(patch_shape, num_classes, activation):
    """NASNet-A-Large (keras.applications, random weights) on the patches, logits out (88,953,851 parameters with
    1001 classes, whatever the patch size)."""
    return keras.applications.NASNetLarge(input_shape=patch_shape, weights=None, classes=num_classes,
                                          classifier_activation=None, name="nasnet_large")


# The patch classifier of the small preset: three 3x3 conv + BatchNorm + ReLU + 2x2 max-pool stages on the 33 px
# patches (33 -> 16 -> 8 -> 4), global average pooling, one hidden dense layer.
PATCH_CONVNET = dict(filters=(16, 32, 64), kernel_sizes=3, strides=1, padding="same", pool=True, batch_norm=True,
                     flatten=False, dense_units=(64,))


def convnet(patch_shape, num_classes, activation):
    """The zoo's ConvNet (`PATCH_CONVNET`) on the patches."""
    return ConvNet(image_shape=patch_shape, num_classes=num_classes, activation=activation, name="patch_convnet",
                   **PATCH_CONVNET)


build_saccader_nasnet, build_saccader_convnet = _with_classifier(nasnet), _with_classifier(convnet)

register_preset(
    "saccader_imagenet", build_saccader,
    "Saccader (BagNet-77-lowD + attention network + cell), 224x224 RGB, 1001 classes, 6 glimpses "
    "(35,583,913 parameters as in the paper)", IMAGENET,
    image_shape=(224, 224, 3), num_classes=1001, num_glimpses=6)

register_preset(
    "policy_bagnet77_imagenet", build_policy_classifier,
    "BagNet-77-lowD read at the cells of an engineered policy (policy=random|center|ordered_logits|"
    "sobel_mean|sobel_var), 224x224 RGB, 1001 classes", IMAGENET,
    image_shape=(224, 224, 3), num_classes=1001, num_glimpses=6, policy="ordered_logits")

register_preset(
    "saccader_nasnet_imagenet", build_saccader_nasnet,
    "Saccader-NASNet (paper section 4.3): the Saccader of saccader_imagenet on 331x331 RGB images area-downsized "
    "to 224, NASNet-A-Large on its 6 glimpses cut from the 331 px images as 113 px patches, 1001 classes "
    "(124,537,764 parameters as in the paper)", {**IMAGENET, "image_size": [331, 331]},
    image_shape=(331, 331, 3), saccader_image_shape=(224, 224, 3), num_classes=1001, num_glimpses=6)

register_preset("saccader_cluttered100", build_saccader,
                "Narrow Saccader (BagNet-33-lowD) for 100x100 grayscale cluttered digits, 10 classes, 6 glimpses",
                GREY100, **SMALL_BAGNET33, num_glimpses=6, attention_filters=(128, 64), mixing_dim=64)
register_preset("saccader_convnet_cluttered100", build_saccader_convnet,
                "The narrow Saccader of saccader_cluttered100 picks 6 glimpses on 100x100 grayscale images, a small "
                "ConvNet classifies the 33 px patches (same resolution: no resize), 10 classes",
                GREY100, **SMALL_BAGNET33, num_glimpses=6, attention_filters=(128, 64), mixing_dim=64)
register_preset("policy_bagnet33_cluttered100", build_policy_classifier,
                "Narrow BagNet-33-lowD read at an engineered policy's cells, 100x100 grayscale, 10 classes",
                GREY100, **SMALL_BAGNET33, num_glimpses=6, policy="ordered_logits")
