"""Shared bases of the zoo's models: `ZooModel` (a keras.Model subclass that holds a functional graph, validates its
image input and carries its preset) and `GlimpseModel` (the public base of every attention classifier).

Both follow the keras-hub Backbone pattern: the graph is built in ``__init__``, ``get_config`` returns only the
constructor arguments (each subclass's ``_constructor_config()`` plus ``name``, ``trainable`` and ``metadata``) and
``from_config`` is ``cls(**config)`` (nested models are serialized with ``keras.saving.serialize_keras_object``).
Image inputs are validated before they reach TensorFlow, so bad input gets a ValueError that names the problem.

**The preset travels with the model.** ``metadata`` (set by `saccade_zoo.build`, saved in the config) holds the
preset name, its preprocessing (mean/std, value range) and the class names, so a reloaded ``.keras`` file exports,
evaluates and trains with no ``--preset`` flag.
"""
import copy

import numpy as np

import keras
import tensorflow as tf

from saccade_zoo.contract import ACTIVATIONS, OutputContract
from saccade_zoo.training.losses import full_image_terms
from saccade_zoo.training.staged import Stage, StagedTrainingMixin


def _is_concrete(x):
    """Values known now: NumPy arrays, or tensors while executing eagerly (graph tensors inside a tf.function
    also have a ``numpy`` attribute, so that alone does not tell)."""
    return isinstance(x, np.ndarray) or (tf.is_tensor(x) and tf.executing_eagerly() and hasattr(x, "numpy"))


def check_model_input(x, image_shape, where, min_size=None, min_size_reason="one receptive field"):
    """Validate a batch of *model-ready* images (float, standardised) against a model's input spec; raise a
    ValueError naming the problem. (The exporter's `saccade_zoo.export.core.check_raw_pixels` validates raw
    [0, 1] pixels instead.)

    Static checks (rank, size, channels, dtype) run on any tensor; the NaN/Inf check runs on concrete values
    (NumPy arrays, eager tensors), i.e. wherever the values are known before tracing. ``min_size``: the smallest
    side the model can see at all (a BagNet's receptive field), reported before the exact-size check.
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
        if min_size is not None and size < min_size:
            raise ValueError(
                f"{where}: image {axis} {size} is smaller than {min_size_reason} ({min_size} px); "
                f"the model needs {height}x{width} images."
            )
        if size != expected:
            raise ValueError(f"{where} expects {height}x{width} images, got {axis} {size} (input shape {shape}).")
    if _is_concrete(x):
        finite = np.isfinite(x).all() if isinstance(x, np.ndarray) else bool(tf.reduce_all(tf.math.is_finite(x)))
        if not finite:
            raise ValueError(f"{where}: the images contain NaN or Inf pixel values.")
    return x


_MODEL_KWARGS = ("trainable", "dtype", "metadata")


def reject_unknown_kwargs(cls_name, kwargs):
    """Models accept their own arguments plus keras.Model's `name`, `trainable`, `dtype` and the zoo's `metadata`;
    anything else is a typo or a misrouted preset override, which must not pass silently."""
    unknown = sorted(set(kwargs) - set(_MODEL_KWARGS))
    if unknown:
        raise TypeError(f"{cls_name} got unexpected keyword argument(s): {', '.join(unknown)}.")


def check_activation(activation):
    """The output activation of a zoo model, one of `saccade_zoo.contract.ACTIVATIONS`, or a ValueError."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}.")
    return activation


def shape_hwc(value, what="image_shape"):
    """(height, width, channels) as positive ints, or a ValueError naming ``what``."""
    shape = tuple(int(d) for d in value)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{what} must be (height, width, channels), each >= 1, got {shape}.")
    return shape


METADATA_KEYS = ("preset", "preprocessing", "class_names")


def clean_metadata(metadata):
    """A JSON-able copy of a model's metadata: ``preset`` (name), ``preprocessing`` (dict with mean, std,
    value_range, image_size, channels) and ``class_names`` (list of str); unknown keys are refused."""
    metadata = copy.deepcopy(dict(metadata or {}))
    unknown = sorted(set(metadata) - set(METADATA_KEYS))
    if unknown:
        raise ValueError(f"Unknown model metadata {unknown}; known keys: {', '.join(METADATA_KEYS)}.")
    if metadata.get("class_names") is not None:
        metadata["class_names"] = [str(n) for n in metadata["class_names"]]
    if metadata.get("preprocessing") is not None:
        metadata["preprocessing"] = {k: list(v) if isinstance(v, tuple) else v
                                     for k, v in dict(metadata["preprocessing"]).items()}
    return metadata


class ZooModel(keras.Model):
    """Functional zoo model with validated image input, a declared output contract and the metadata of its preset.

    Subclasses build their graph in ``__init__``, pass ``**kwargs`` (which may hold ``metadata``) to
    ``super().__init__(inputs=..., outputs=..., name=...)``, and define ``_constructor_config()`` and
    ``output_contract()``. ``min_input_size`` (None here) is the smallest image side the model can see at all.
    """

    min_input_size = None

    def __init__(self, *args, metadata=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.metadata = clean_metadata(metadata)

    # ------------------------------------------------------------------------------------------ preset metadata
    @property
    def preset(self):
        return self.metadata.get("preset")

    @property
    def preprocessing(self):
        """The preset's preprocessing (mean, std on [0, 1] pixels, value range), or None if unknown."""
        return self.metadata.get("preprocessing")

    @property
    def class_names(self):
        """The class names this model was built or trained with ("class_0", ... when unknown)."""
        names = self.metadata.get("class_names")
        return list(names) if names else [f"class_{i}" for i in range(self.num_classes)]

    # ------------------------------------------------------------------------------------------------ contract
    def output_contract(self):
        raise NotImplementedError

    @property
    def contract(self):
        """The `saccade_zoo.contract.OutputContract` of this model's outputs."""
        return self.output_contract()

    @property
    def num_classes(self):
        return int(self.output["logits"].shape[-1])

    # ------------------------------------------------------------------------------------------------- input
    def _validate(self, x):
        if isinstance(x, dict):
            x = x.get("images", next(iter(x.values())))
        check_model_input(x, self.image_shape, f"{type(self).__name__} '{self.name}'", self.min_input_size)

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

    # ----------------------------------------------------------------------------------------------- config
    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable, **self._constructor_config()}
        if self.metadata:
            config["metadata"] = copy.deepcopy(self.metadata)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class GlimpseModel(ZooModel):
    """Public base of the zoo's attention classifiers (every family): a model that looks at ``num_glimpses``
    glimpses and returns the outputs of its `OutputContract` (``logits``, ``step_logits``, ``locations``,
    ``boxes``, ...).

    A family defines ``location_kind`` ("grid" or "continuous"), ``_constructor_config()`` with a
    ``num_glimpses`` entry, ``aggregation`` ("mean": logits are the glimpses' mean; "last": a recurrent model's
    last step) and, if its outputs are multi-label, ``activation = "sigmoid"``. ``with_glimpses(n)``
    copies the model (same weights) with another number of glimpses; a family whose glimpse count is bounded
    overrides ``_check_num_glimpses``.
    """

    location_kind = "grid"
    aggregation = "mean"  # "last" for a recurrent model (RAM, DRAM): see saccade_zoo.contract
    extra_outputs = ()

    @property
    def activation(self):
        return getattr(self, "_activation", "softmax")

    def output_contract(self):
        return OutputContract(num_classes=self.num_classes, num_glimpses=self.num_glimpses,
                              location_kind=self.location_kind, activation=self.activation,
                              extra_outputs=tuple(self.extra_outputs), aggregation=self.aggregation)

    def _check_num_glimpses(self, num_glimpses):
        if int(num_glimpses) < 1:
            raise ValueError(f"num_glimpses must be >= 1, got {num_glimpses}.")

    def with_glimpses(self, num_glimpses):
        """A copy of this model (same weights) that takes ``num_glimpses`` glimpses; no retraining needed."""
        self._check_num_glimpses(num_glimpses)
        config = self.get_config()
        config["num_glimpses"] = int(num_glimpses)
        clone = type(self).from_config(config)
        clone.set_weights(self.get_weights())
        return clone


class FullImageClassifier(StagedTrainingMixin, ZooModel):
    """Base of the zoo's plain full-image classifiers (ConvNet, ResNet): ``logits`` only (no glimpses), an
    ``activation`` attribute ("softmax" or "sigmoid"), and one training stage, "classifier": the cross entropy of the
    logits plus the weight penalty on the kernels (`saccade_zoo.training.losses.full_image_terms`)."""

    def output_contract(self):
        """A full-image classifier: ``logits`` only."""
        return OutputContract(num_classes=self.num_classes, num_glimpses=None, activation=self.activation)

    stages = (Stage("classifier", "cross entropy of the full-image logits", ("loss", "ce", "l2", "accuracy"),
                    epochs=3, learning_rate=0.05),)

    def _stage_variables(self, stage):
        return self.trainable_variables

    def _stage_terms(self, stage, images, labels, training, options):
        return full_image_terms(self, images, labels, training)
