"""Saccader presets (and the engineered-policy baselines on the same BagNets)."""
from saccade_zoo.models.bagnet.backbone import BagNet
from saccade_zoo.models.bagnet.presets import GREY100, IMAGENET, SMALL_BAGNET33
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

register_preset("saccader_cluttered100", build_saccader,
                "Narrow Saccader (BagNet-33-lowD) for 100x100 grayscale cluttered digits, 10 classes, 6 glimpses",
                GREY100, **SMALL_BAGNET33, num_glimpses=6, attention_filters=(128, 64), mixing_dim=64)
register_preset("policy_bagnet33_cluttered100", build_policy_classifier,
                "Narrow BagNet-33-lowD read at an engineered policy's cells, 100x100 grayscale, 10 classes",
                GREY100, **SMALL_BAGNET33, num_glimpses=6, policy="ordered_logits")
