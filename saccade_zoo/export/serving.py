"""The serving signature: raw [0, 1] float32 pixels in, named outputs out, preprocessing inside the graph.

``serving_default`` of the exported SavedModel (and of every TFLite variant) is

    images: float32 (batch, H, W, C), pixel values in [0, 1]  (uint8 pixels: divide by 255 first)
    -> logits (B, C) float32, probabilities (B, C) float32 (softmax of logits),
       and, for glimpse models, step_logits (B, T, C) float32, locations (B, T, 2) int32 (row, col) on the
       feature grid, boxes (B, T, 4) float32 pixel boxes (y0, x0, y1, x1), half-open.

The preset's mean/std standardisation, ``(images - mean) / std``, is part of the signature, so a client never
needs saccade_zoo. The batch axis is dynamic in the SavedModel and in the TFLite files.
"""
import numpy as np

import keras
import tensorflow as tf

# Model outputs passed through to the signature, in this order (whichever the model has).
PASSTHROUGH_OUTPUTS = ("step_logits", "locations", "boxes")
SIGNATURE_KEY = "serving_default"
INPUT_NAME = "images"


def _model_image_shape(model):
    shape = getattr(model, "image_shape", None) or tuple(model.inputs[0].shape[1:])
    return tuple(int(d) for d in shape)


def resolve_preprocessing(model, preprocessing=None):
    """The preprocessing dict ({image_size, channels, mean, std, value_range}) to bake into the signature.

    Taken, in order, from ``preprocessing`` (a dict or a preset name), the model's ``preset`` attribute (set by
    ``saccade_zoo.build``), or the registry's presets of the same input shape when they all agree.
    """
    from saccade_zoo.registry import get_preset, list_models

    if isinstance(preprocessing, str):
        preprocessing = get_preset(preprocessing)["preprocessing"]
    if preprocessing is None and getattr(model, "preset", None):
        preprocessing = get_preset(model.preset)["preprocessing"]
    height, width, channels = _model_image_shape(model)
    if preprocessing is None:
        found = {}
        for name in list_models():
            info = get_preset(name)
            pre = info["preprocessing"]
            if pre["image_size"] == height and pre["channels"] == channels and height == width:
                found[(tuple(pre["mean"]), tuple(pre["std"]))] = pre
        if len(found) != 1:
            raise ValueError(
                f"Cannot tell the preprocessing (mean/std) of model '{model.name}' with input shape "
                f"{(height, width, channels)}: {'no preset has' if not found else 'several presets have'} that "
                "input shape. Pass preprocessing= (a preset name or a dict with mean and std)."
            )
        preprocessing = next(iter(found.values()))
    preprocessing = dict(preprocessing)
    missing = [k for k in ("mean", "std") if k not in preprocessing]
    if missing:
        raise ValueError(f"preprocessing needs {', '.join(missing)}; got keys {sorted(preprocessing)}.")
    mean = [float(v) for v in np.ravel(preprocessing["mean"])]
    std = [float(v) for v in np.ravel(preprocessing["std"])]
    for name, values in (("mean", mean), ("std", std)):
        if len(values) not in (1, channels):
            raise ValueError(f"preprocessing {name} has {len(values)} values; the model has {channels} channel(s).")
    if any(s <= 0 for s in std):
        raise ValueError(f"preprocessing std must be positive, got {std}.")
    return {
        "image_size": [height, width],
        "channels": channels,
        "mean": mean,
        "std": std,
        "value_range": [0.0, 1.0],
        "dtype": "float32",
    }


def output_names(model):
    """Names of the signature's outputs for this model."""
    outputs = model.output if isinstance(model.output, dict) else None
    if outputs is None or "logits" not in outputs:
        raise ValueError(
            f"Model '{model.name}' must return a dict with a 'logits' output to be exported; "
            f"got {type(model.output).__name__}."
        )
    return ["logits", "probabilities"] + [k for k in PASSTHROUGH_OUTPUTS if k in outputs]


def serving_function(model, preprocessing):
    """A plain function images -> dict of named outputs (standardisation inside, inference mode)."""
    names = output_names(model)
    channels = preprocessing["channels"]
    mean = np.asarray(preprocessing["mean"], "float32") * np.ones(channels, "float32")
    std = np.asarray(preprocessing["std"], "float32") * np.ones(channels, "float32")
    identity = bool(np.all(mean == 0.0) and np.all(std == 1.0))

    def serve(images):
        x = tf.cast(images, tf.float32)
        if not identity:
            x = (x - tf.constant(mean)) / tf.constant(std)
        out = model(x, training=False)
        result = {"logits": out["logits"], "probabilities": tf.nn.softmax(out["logits"], axis=-1)}
        for key in names[2:]:
            result[key] = out[key]
        return result

    return serve


def input_signature(preprocessing, batch_size=None):
    height, width = preprocessing["image_size"]
    return [tf.TensorSpec([batch_size, height, width, preprocessing["channels"]], tf.float32, name=INPUT_NAME)]


def serving_archive(model, preprocessing):
    """A `keras.export.ExportArchive` whose ``serve`` endpoint (also ``serving_default``) is the signature."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", serving_function(model, preprocessing), input_signature=input_signature(preprocessing))
    return archive


def save_serving(model, out_dir, preprocessing):
    """Write the SavedModel (``serving_default`` + ``serve``) to ``out_dir``."""
    serving_archive(model, preprocessing).write_out(str(out_dir), verbose=False)
    return str(out_dir)
