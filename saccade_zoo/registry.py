"""Named presets in the spirit of timm / keras-hub: `build(name, **overrides)`, `list_models()`, `get_preset(name)`.

Each model family registers its own presets from its folder (``saccade_zoo/models/<family>/presets.py``, imported
by ``saccade_zoo.models``) with `register_preset`; this module only keeps the table. A preset carries everything a
user needs to feed the model and read its outputs: input size and channels, normalisation (mean/std applied to
pixels scaled to [0, 1]), class count and names, number of glimpses. `build` stores the preset name, its
preprocessing and class names in the model's ``metadata``, which is saved with the model: a reloaded ``.keras``
file knows its preset.
"""
import copy
import difflib
import fnmatch

import numpy as np

_PRESETS = {}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def register_preset(name, builder, description, preprocessing, class_names=None, task=None, **config):
    """Register a preset.

    Args:
        name: the preset's name (unique).
        builder: callable ``builder(**config) -> model`` (a model class or a function of the family).
        description: one line for `list_models` users.
        preprocessing: dict with ``image_size``, ``channels``, ``mean``, ``std`` (on [0, 1] pixels), ``value_range``.
        class_names: optional list of class names (default "class_0", ...).
        task: the cluttered-data task the preset is made for ("single", "identify", "sum"; None: any), the default
            of ``tools/train.py --task``.
        **config: the builder's keyword arguments (``num_classes``, ``image_shape``, ...).
    """
    if name in _PRESETS:
        raise ValueError(f"Preset {name!r} is already registered.")
    if not callable(builder):
        raise TypeError(f"The builder of preset {name!r} must be callable, got {builder!r}.")
    _PRESETS[name] = {"name": name, "builder": builder, "description": description,
                      "preprocessing": dict(preprocessing),
                      "class_names": None if class_names is None else list(class_names), "task": task,
                      "config": config}


def list_models(pattern=None):
    """Sorted preset names, optionally filtered by a shell pattern such as "saccader*"."""
    names = sorted(_PRESETS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def get_preset(name):
    """A copy of a preset's description, preprocessing, class names and builder config."""
    if name not in _PRESETS:
        close = difflib.get_close_matches(name, list(_PRESETS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown model {name!r}.{hint} Known models: {', '.join(list_models())}.")
    preset = dict(_PRESETS[name])
    builder = preset.pop("builder")
    preset = copy.deepcopy(preset)
    preset["builder"] = builder
    return preset


def build(name, **overrides):
    """Build a preset, e.g. ``build("saccader_imagenet")`` or ``build("saccader_cluttered100", num_classes=19)``.

    Overrides replace preset config entries (image_shape, num_classes, num_glimpses, planes, ...); an override a
    model does not take is a TypeError. ``class_names=[...]`` overrides the preset's class names. Weights are
    freshly initialised: no pretrained weights are downloaded.
    """
    preset = get_preset(name)
    class_names = overrides.pop("class_names", preset["class_names"])
    config = {**preset["config"], **overrides}
    num_classes = config.get("num_classes")
    if class_names is not None and num_classes is not None and len(class_names) != int(num_classes):
        class_names = None  # e.g. num_classes overridden: the preset's names no longer apply
    preprocessing = dict(preset["preprocessing"])
    if "image_shape" in config:
        height, width, channels = config["image_shape"]
        preprocessing.update(image_size=[int(height), int(width)], channels=int(channels))
    metadata = {"preset": name, "preprocessing": preprocessing}
    if class_names is not None:
        metadata["class_names"] = list(class_names)
    return preset["builder"](metadata=metadata, **config)


def preprocess(images, preset):
    """Scale uint8 pixels to [0, 1] (floats are taken as already in [0, 1]) and standardise with the preset's
    mean/std. ``preset``: a preset name, a model (its saved preprocessing) or a preprocessing dict. Returns float32
    NumPy images ready for the model."""
    if isinstance(preset, str):
        info = get_preset(preset)["preprocessing"]
    elif hasattr(preset, "preprocessing"):
        info = preset.preprocessing
        if info is None:
            raise ValueError(f"Model {preset.name!r} carries no preprocessing (built without a preset): pass a "
                             "preset name or a dict with mean and std.")
    else:
        info = preset
    images = np.asarray(images)
    if images.dtype == np.uint8:
        images = images.astype("float32") / 255.0
    images = images.astype("float32")
    return (images - np.asarray(info["mean"], "float32")) / np.asarray(info["std"], "float32")
