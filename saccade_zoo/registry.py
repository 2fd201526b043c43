"""Named presets in the spirit of timm: `build(name, **overrides)`, `list_models()`, `get_preset(name)`.

A preset carries everything a user needs to feed the model: input size and channels, normalisation
(mean/std applied to pixels scaled to [0, 1]), class count and number of glimpses.
"""
import copy
import difflib
import fnmatch

import numpy as np

_PRESETS = {}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def register_preset(name, arch, description, preprocessing, **config):
    """Register a preset: `arch` names a builder in `_BUILDERS`; `config` holds its keyword arguments."""
    if name in _PRESETS:
        raise ValueError(f"Preset {name!r} is already registered.")
    _PRESETS[name] = {"name": name, "arch": arch, "description": description,
                      "preprocessing": dict(preprocessing), "config": config}


def list_models(pattern=None):
    """Sorted preset names, optionally filtered by a shell pattern such as "saccader*"."""
    names = sorted(_PRESETS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def get_preset(name):
    """A copy of a preset's description, preprocessing and builder config."""
    if name not in _PRESETS:
        close = difflib.get_close_matches(name, list(_PRESETS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown model {name!r}.{hint} Known models: {', '.join(list_models())}.")
    return copy.deepcopy(_PRESETS[name])


def _build_bagnet(**config):
    from saccade_zoo.models.bagnet.backbone import BagNet

    return BagNet(**config)


_BACKBONE_KEYS = ("image_shape", "num_classes", "blocks", "planes", "kernel3", "strides", "stem_filters",
                  "expansion", "lowd_dim", "bn_momentum", "bn_epsilon", "synchronized_bn")


def _split_backbone(config):
    backbone = {k: config.pop(k) for k in _BACKBONE_KEYS if k in config}
    return _build_bagnet(name="bagnet", **backbone), config


def _build_saccader(**config):
    from saccade_zoo.models.saccader.saccader import Saccader

    backbone, rest = _split_backbone(config)
    return Saccader(backbone, **rest)


def _build_policy(**config):
    from saccade_zoo.models.saccader.saccader import PolicyClassifier

    backbone, rest = _split_backbone(config)
    return PolicyClassifier(backbone, **rest)


_BUILDERS = {"bagnet": _build_bagnet, "saccader": _build_saccader, "policy": _build_policy}


def build(name, **overrides):
    """Build a preset, e.g. ``build("saccader_imagenet")`` or ``build("saccader_cluttered100", num_classes=19)``.

    Overrides replace preset config entries (image_shape, num_classes, num_glimpses, planes, ...).
    Weights are freshly initialised: no pretrained weights are downloaded.
    """
    preset = get_preset(name)
    config = {**preset["config"], **overrides}
    model = _BUILDERS[preset["arch"]](**config)
    model.preset = name
    return model


def preprocess(images, preset):
    """Scale uint8 pixels to [0, 1] (floats are taken as already in [0, 1]) and standardise with the
    preset's mean/std. Returns float32 NumPy images ready for the model."""
    info = get_preset(preset)["preprocessing"] if isinstance(preset, str) else preset
    images = np.asarray(images)
    if images.dtype == np.uint8:
        images = images.astype("float32") / 255.0
    images = images.astype("float32")
    return (images - np.asarray(info["mean"], "float32")) / np.asarray(info["std"], "float32")


# ---------------------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------------------
_IMAGENET = {"image_size": 224, "channels": 3, "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "value_range": [0, 1]}
_GREY = {"image_size": 100, "channels": 1, "mean": (0.0,), "std": (1.0,), "value_range": [0, 1]}

for _rf, _k3 in ((9, (1, 1, 0, 0)), (17, (1, 1, 1, 0)), (33, (1, 1, 1, 1)), (77, (2, 2, 2, 2))):
    register_preset(
        f"bagnet{_rf}_lowd_imagenet", "bagnet",
        f"BagNet-{_rf}-lowD on 224x224 RGB ImageNet, 1001 classes (label 0 reserved)", _IMAGENET,
        image_shape=(224, 224, 3), num_classes=1001, kernel3=_k3)

register_preset(
    "saccader_imagenet", "saccader",
    "Saccader (BagNet-77-lowD + attention network + cell), 224x224 RGB, 1001 classes, 6 glimpses "
    "(35,583,913 parameters as in the paper)", _IMAGENET,
    image_shape=(224, 224, 3), num_classes=1001, num_glimpses=6)

register_preset(
    "policy_bagnet77_imagenet", "policy",
    "BagNet-77-lowD read at the cells of an engineered policy (policy=random|center|ordered_logits|"
    "sobel_mean|sobel_var), 224x224 RGB, 1001 classes", _IMAGENET,
    image_shape=(224, 224, 3), num_classes=1001, num_glimpses=6, policy="ordered_logits")

# Small presets for grayscale 100x100 cluttered digits: BagNet-33 geometry (9x9 grid, 33 px glimpses at
# stride 8, a digit is 28 px) at reduced width so that training fits a 2-core CPU.
_SMALL = dict(image_shape=(100, 100, 1), num_classes=10, blocks=(2, 2, 2, 2), planes=(16, 32, 64, 128),
              kernel3=(1, 1, 1, 1), stem_filters=16, lowd_dim=128)
register_preset("bagnet33_cluttered100", "bagnet",
                "Narrow BagNet-33-lowD for 100x100 grayscale cluttered digits, 10 classes", _GREY, **_SMALL)
register_preset("saccader_cluttered100", "saccader",
                "Narrow Saccader (BagNet-33-lowD) for 100x100 grayscale cluttered digits, 10 classes, 6 glimpses",
                _GREY, **_SMALL, num_glimpses=6, attention_filters=(128, 64), mixing_dim=64)
register_preset("policy_bagnet33_cluttered100", "policy",
                "Narrow BagNet-33-lowD read at an engineered policy's cells, 100x100 grayscale, 10 classes",
                _GREY, **_SMALL, num_glimpses=6, policy="ordered_logits")
