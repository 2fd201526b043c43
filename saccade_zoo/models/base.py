"""Shared base of the zoo's models: a keras.Model subclass that holds a functional graph.

Follows the keras-hub Backbone pattern: the graph is built in ``__init__``, ``get_config`` returns only
the constructor arguments and ``from_config`` is ``cls(**config)`` (nested models are serialized with
``keras.saving.serialize_keras_object``). Image inputs are validated before they reach TensorFlow, so bad input
gets a ValueError that names the problem.
"""
import numpy as np

import keras
import tensorflow as tf


def _is_concrete(x):
    """Values known now: NumPy arrays, or tensors while executing eagerly (graph tensors inside a tf.function
    also have a ``numpy`` attribute, so that alone does not tell)."""
    return isinstance(x, np.ndarray) or (tf.is_tensor(x) and tf.executing_eagerly() and hasattr(x, "numpy"))


def check_images(x, image_shape, receptive_field, where):
    """Validate a batch of images against a model's input spec; raise ValueError naming the problem.

    Static checks (rank, size, channels, dtype) run on any tensor; the NaN/Inf check runs on concrete
    values (NumPy arrays, eager tensors), i.e. wherever the values are known before tracing.
    """
    if isinstance(x, (list, tuple)) and not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise ValueError(f"{where} expects a batch of images (an array or tensor), got {type(x).__name__}.")
    height, width, channels = image_shape
    shape = tuple(x.shape)
    if len(shape) != 4:
        hint = " For a single image, add a batch axis: images[None]." if len(shape) == 3 else ""
        raise ValueError(
            f"{where} expects images of rank 4 (batch, {height}, {width}, {channels}); "
            f"got rank {len(shape)} with shape {shape}.{hint}"
        )
    dtype = keras.backend.standardize_dtype(x.dtype)
    if "float" not in dtype:
        raise ValueError(
            f"{where} expects floating-point images (preprocessed: scaled and standardised), got dtype {dtype}. "
            "Convert with saccade_zoo.preprocess(images, preset) or images.astype('float32') / 255."
        )
    if shape[3] is not None and shape[3] != channels:
        raise ValueError(f"{where} expects {channels} channel(s), got {shape[3]} (input shape {shape}).")
    for size, expected, axis in ((shape[1], height, "height"), (shape[2], width, "width")):
        if size is None:
            continue
        if size < receptive_field:
            raise ValueError(
                f"{where}: image {axis} {size} is smaller than one receptive field ({receptive_field} px); "
                f"the model needs {height}x{width} images."
            )
        if size != expected:
            raise ValueError(f"{where} expects {height}x{width} images, got {axis} {size} (input shape {shape}).")
    if _is_concrete(x):
        finite = np.isfinite(x).all() if isinstance(x, np.ndarray) else bool(tf.reduce_all(tf.math.is_finite(x)))
        if not finite:
            raise ValueError(f"{where}: the images contain NaN or Inf pixel values.")
    return x


_MODEL_KWARGS = ("trainable", "dtype")


def reject_unknown_kwargs(cls_name, kwargs):
    """Models accept their own arguments plus keras.Model's `name`, `trainable`, `dtype`; anything else is a
    typo or a misrouted preset override, which must not pass silently."""
    unknown = sorted(set(kwargs) - set(_MODEL_KWARGS))
    if unknown:
        raise TypeError(f"{cls_name} got unexpected keyword argument(s): {', '.join(unknown)}.")


class ZooModel(keras.Model):
    """Functional zoo model with validated image input. Subclasses call ``_finish_init`` at the end."""

    def _validate(self, x):
        if isinstance(x, dict):
            x = x.get("images", next(iter(x.values())))
        check_images(x, self.image_shape, self.receptive_field, f"{type(self).__name__} '{self.name}'")

    @property
    def image_shape(self):
        return tuple(self.inputs[0].shape[1:])

    def __call__(self, *args, **kwargs):
        if args:
            self._validate(args[0])
        return super().__call__(*args, **kwargs)

    def predict(self, x, *args, **kwargs):
        if not isinstance(x, tf.data.Dataset) and not callable(getattr(x, "__next__", None)):
            self._validate(x)
        return super().predict(x, *args, **kwargs)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, **self._constructor_config()}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
