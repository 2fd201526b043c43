"""The serving signature: raw [0, 1] float32 pixels in, named outputs out, preprocessing inside the graph.

``serving_default`` of the exported SavedModel (and of every TFLite variant) is

    images: float32 (batch, H, W, C), pixel values in [0, 1]  (uint8 pixels: divide by 255 first)
    -> logits (B, C) float32, probabilities (B, C) float32 (softmax of logits, or sigmoid for a multi-label
       model: the model's `OutputContract` says which), and, for glimpse models, the rest of the contract's outputs:
       step_logits (B, T, C) float32, locations (B, T, 2) (int32 grid (row, col), or float32 pixel centres),
       boxes (B, T, 4) float32 pixel boxes (y0, x0, y1, x1), half-open, and scales for continuous locations.

The preset's mean/std standardisation, ``(images - mean) / std``, is part of the signature, so a client never
needs saccade_zoo. The batch axis is dynamic in the SavedModel and in the TFLite files.
"""
import numpy as np

import keras
import tensorflow as tf

SIGNATURE_KEY = "serving_default"
INPUT_NAME = "images"


def _model_image_shape(model):
    shape = getattr(model, "image_shape", None) or tuple(model.inputs[0].shape[1:])
    return tuple(int(d) for d in shape)


def resolve_preprocessing(model, preprocessing=None):
    """The preprocessing dict ({image_size, channels, mean, std, value_range}) to bake into the signature.

    Taken from ``preprocessing`` (a dict or a preset name) when given, else from the model's own metadata (set by
    ``saccade_zoo.build`` and saved with the model); a model without either is refused.
    """
    from saccade_zoo.registry import get_preset

    if isinstance(preprocessing, str):
        preprocessing = get_preset(preprocessing)["preprocessing"]
    if preprocessing is None:
        preprocessing = getattr(model, "preprocessing", None)
    height, width, channels = _model_image_shape(model)
    if preprocessing is None:
        raise ValueError(
            f"Model '{model.name}' carries no preprocessing (it was not built from a preset): pass preprocessing= "
            "(a preset name or a dict with mean and std; tools/export.py: --preset)."
        )
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
    """Names of the signature's outputs for this model: logits, probabilities, then the rest of its contract's
    outputs (not a family's extra ones)."""
    outputs = model.output if isinstance(model.output, dict) else None
    if outputs is None or "logits" not in outputs or not hasattr(model, "contract"):
        raise ValueError(
            f"Model '{model.name}' must be a saccade_zoo model returning a dict with a 'logits' output to be "
            f"exported; got {type(model).__name__} returning {type(model.output).__name__}."
        )
    contract = model.contract
    extra = {name for name, _, _ in contract.extra_outputs}
    return ["logits", "probabilities"] + [k for k in contract.output_specs() if k != "logits" and k not in extra]


def serving_function(model, preprocessing):
    """A plain function images -> dict of named outputs (standardisation inside, inference mode)."""
    names = output_names(model)
    multi_label = model.contract.multi_label
    channels = preprocessing["channels"]
    mean = np.asarray(preprocessing["mean"], "float32") * np.ones(channels, "float32")
    std = np.asarray(preprocessing["std"], "float32") * np.ones(channels, "float32")
    identity = bool(np.all(mean == 0.0) and np.all(std == 1.0))

    def serve(images):
        x = tf.cast(images, tf.float32)
        if not identity:
            x = (x - tf.constant(mean)) / tf.constant(std)
        out = model(x, training=False)
        probabilities = tf.sigmoid(out["logits"]) if multi_label else tf.nn.softmax(out["logits"], axis=-1)
        result = {"logits": out["logits"], "probabilities": probabilities}
        for key in names[2:]:
            result[key] = out[key]
        return result

    return serve


def input_signature(preprocessing, batch_size=None):
    height, width = preprocessing["image_size"]
    return [tf.TensorSpec([batch_size, height, width, preprocessing["channels"]], tf.float32, name=INPUT_NAME)]


def serving_archive(model, preprocessing):
    """A `keras.export.ExportArchive` whose ``serve`` endpoint (also ``serving_default``) is the signature.

    The model is not passed to ``archive.track``: ``add_endpoint`` already keeps every variable the endpoint reads
    (and only those: not a variational saccader's decoder, which inference never runs), while ``track(model)``
    saved each variable a second time under the archive's ``variables`` (Keras 3.15 with TF 2.21: the files
    were twice the weights)."""
    archive = keras.export.ExportArchive()
    archive.add_endpoint("serve", serving_function(model, preprocessing), input_signature=input_signature(preprocessing))
    return archive


def save_serving(model, out_dir, preprocessing):
    """Write the SavedModel (``serving_default`` + ``serve``) to ``out_dir``."""
    serving_archive(model, preprocessing).write_out(str(out_dir), verbose=False)
    return str(out_dir)
