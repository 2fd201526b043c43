"""The Saccader with a separate (high-resolution) classification network: Saccader-NASNet, paper section 4.3."""
import collections

import keras
import tensorflow as tf
from keras import ops

from saccade_zoo.contract import ACTIVATIONS
from saccade_zoo.layers.glimpse import GlimpseSampler
from saccade_zoo.layers.resize import AreaResize
from saccade_zoo.models.base import GlimpseModel, reject_unknown_kwargs, shape_hwc
from saccade_zoo.models.saccader.saccader import OUTPUT_KEYS, Saccader, _check_glimpses
from saccade_zoo.training.losses import aggregated_cross_entropy, correct, penalised_kernels
from saccade_zoo.training.staged import Stage, StagedTrainingMixin

# The sub-networks `SaccaderWithClassifier._forward` runs; ``resize`` is None when both resolutions are equal.
ClassifierParts = collections.namedtuple("ClassifierParts", "resize saccader box_scale sampler classifier")


def _as_saccader(saccader, num_glimpses):
    """A zoo `Saccader` taking ``num_glimpses`` (None: its own); a config dict is deserialized with that count."""
    if isinstance(saccader, dict):
        saccader = dict(saccader)
        saccader.pop("compile_config", None)  # the wrapped Saccader's own optimizer state is not ours to restore
        if num_glimpses is not None:
            saccader["config"] = dict(saccader["config"], num_glimpses=int(num_glimpses))
        saccader = keras.saving.deserialize_keras_object(saccader)
    if not isinstance(saccader, Saccader):
        raise ValueError(f"saccader must be a saccade_zoo Saccader (or its serialized config), got "
                         f"{type(saccader).__name__}.")
    if num_glimpses is not None and int(num_glimpses) != saccader.num_glimpses:
        saccader = saccader.with_glimpses(int(num_glimpses))  # a copy with the same weights
    return saccader


def _as_classifier(classifier):
    if isinstance(classifier, dict):
        classifier = dict(classifier)
        classifier.pop("compile_config", None)
        classifier = keras.saving.deserialize_keras_object(classifier)
    if not isinstance(classifier, keras.Model) or not getattr(classifier, "inputs", None):
        raise ValueError("classifier must be a built Keras model with one image input (a functional model such as "
                         f"keras.applications.NASNetLarge or a zoo ConvNet), got {type(classifier).__name__}.")
    if len(classifier.inputs) != 1 or len(classifier.inputs[0].shape) != 4:
        raise ValueError(f"classifier must take one batch of (P, P, C) images, its inputs are "
                         f"{[tuple(x.shape) for x in classifier.inputs]}.")
    last = getattr(classifier.layers[-1], "activation", None)
    if last in (keras.activations.softmax, keras.activations.sigmoid):
        raise ValueError(f"classifier {classifier.name!r} ends in a {last.__name__}: it must output logits (build "
                         "it with classifier_activation=None), the model averages logits over the glimpses.")
    return classifier


def default_patch_size(saccader, image_shape):
    """The side of a glimpse box in high-resolution pixels, rounded down, per axis: the BagNet's receptive field
    x (high-resolution side / the Saccader's input side); 77 * 331 // 224 = 113 for Saccader-NASNet."""
    field = saccader.receptive_field
    return tuple(field * int(hi) // int(lo) for hi, lo in zip(image_shape[:2], saccader.image_shape[:2]))


@keras.saving.register_keras_serializable(package="saccade_zoo")
class SaccaderWithClassifier(StagedTrainingMixin, GlimpseModel):
    """A Saccader that picks the glimpses and a separate classification network that classifies them
    (Saccader-NASNet, paper section 4.3).

    What the paper says: the base Saccader is applied to 224x224 images to find the glimpse locations; the
    corresponding patches are extracted and classified by a NASNet "fine-tuned to operate on these patches".
    With higher-resolution data, 331x331 images are "down-sized ... to 224x224" for the Saccader and the patches
    are cut from the 331 px images (6 glimpses: 75.03% top-1, 91.19% top-5 on ImageNet, 29.47% of the image seen).
    Per the reference facts (../shared/reference/saccader_architecture.md) the patches are 113 px.

    Graph: one input, the high-resolution images (``image_shape``) -> area-downsized to the Saccader's input size
    (skipped when the sizes are equal) -> the Saccader picks T cells and their pixel boxes -> the boxes are scaled
    into high-resolution pixels (x H_hi / H_lo, x W_hi / W_lo) -> `GlimpseSampler` (the zoo's one bilinear
    sampler) cuts each box from the high-resolution image at ``patch_size`` -> the classifier scores the B*T
    patches -> ``step_logits`` (B, T, C) and ``logits`` = their mean over the glimpses (averaged logits, as the
    Saccader's own prediction). Outputs (contract, location kind "grid"): ``logits``, ``step_logits``,
    ``locations`` (the Saccader's int32 cells), ``boxes`` (float32, in HIGH-RESOLUTION input pixels).

    Our choices where the paper is silent:

    * Down-sizing: area averaging (`AreaResize`, exact for non-integer ratios such as 331 -> 224, anti-aliased,
      TFLite built-ins). The paper does not say how; its input pipeline resizes bicubically.
    * Patch size: the box side in high-resolution pixels rounded down (77 * 331 // 224 = 113, the 113 px of the
      reference facts); the 113.8 px box is resampled bilinearly to it. Override with ``patch_size``.
    * The prediction averages the classifier's logits over the glimpses, as the Saccader does.

    Parameters: the two networks' (the resize and the sampler have none). ``saccader_nasnet_imagenet``: Saccader
    35,583,913 + NASNet-A-Large (1001 classes) 88,953,851 = 124,537,764, the paper's Saccader-NASNet.

    Training (``compile(optimizer, stage=...)`` then ``fit``; the inputs are always the high-resolution images):
    the Saccader's three stages ("representation", "location", "policy", delegated to the inner Saccader on the
    down-sized images: exactly `Saccader`'s steps, the classifier untouched), then ``"classifier"``: the
    classification network fine-tuned on the Saccader's patches (argmax glimpses), the Saccader frozen (run with
    ``training=False``: no gradient, BatchNorm statistics untouched), cross entropy of the glimpse-averaged logits
    plus the weight penalty on the classifier's kernels; only the classifier's variables change.
    ``tools/train.py --preset=saccader_convnet_cluttered100`` runs all four in order. To start from a Saccader
    trained elsewhere (the paper's order), wrap it, ``SaccaderWithClassifier(saccader=trained, classifier=...)``
    (shared, not copied, when the glimpse counts agree), then ``compile(optimizer, stage="classifier")`` and
    ``fit`` (tools/train.py has no flag to start from a saved model). Load the trained Saccader with
    ``keras.models.load_model(path, compile=False)``: a compiled inner Saccader's optimizer state would be saved
    with this model (its variables under ``layers/saccader/optimizer``) and never restored.

    Args:
        saccader: a zoo `Saccader` (or its serialized config).
        classifier: a Keras model mapping (P, P, C) images to (num_classes,) logits (or a dict with ``logits``),
            e.g. ``keras.applications.NASNetLarge(input_shape=(113, 113, 3), weights=None, classes=1001,
            classifier_activation=None)`` or a zoo `ConvNet`; or its serialized config.
        image_shape: the high-resolution input (H, W, C); default the Saccader's input shape (no resize).
        patch_size: side (or (h, w)) of the patches the classifier reads; default `default_patch_size`.
        num_glimpses: T (default the Saccader's; another count uses a copy of the Saccader with that count).
    """

    location_kind = "grid"

    def __init__(self, saccader, classifier, image_shape=None, patch_size=None, num_glimpses=None,
                 name="saccader_with_classifier", **kwargs):
        reject_unknown_kwargs(type(self).__name__, kwargs)
        saccader = _as_saccader(saccader, num_glimpses)
        classifier = _as_classifier(classifier)
        low = saccader.image_shape
        image_shape = shape_hwc(low if image_shape is None else image_shape)
        if image_shape[2] != low[2]:
            raise ValueError(f"image_shape {image_shape} has {image_shape[2]} channel(s), the Saccader's input "
                             f"{low} has {low[2]}.")
        if patch_size is None:
            patch_size = default_patch_size(saccader, image_shape)
        elif isinstance(patch_size, (list, tuple)):
            patch_size = tuple(int(s) for s in patch_size)
        else:
            patch_size = (int(patch_size), int(patch_size))
        if len(patch_size) != 2 or min(patch_size) < 1:
            raise ValueError(f"patch_size must be a positive int or (h, w), got {patch_size}.")
        expected = (*patch_size, image_shape[2])
        given = tuple(classifier.inputs[0].shape[1:])
        if any(g is not None and g != e for g, e in zip(given, expected)):
            raise ValueError(f"classifier {classifier.name!r} takes {given} images but the patches are {expected}: "
                             f"build it for {expected} (e.g. input_shape={expected}) or pass patch_size.")
        activation = saccader.activation
        own = getattr(classifier, "activation", None)
        if isinstance(own, str) and own in ACTIVATIONS and own != activation:
            raise ValueError(f"classifier activation {own!r} differs from the Saccader's {activation!r}.")

        resize = None if tuple(image_shape[:2]) == tuple(low[:2]) else AreaResize(low[:2], name="downsize")
        box_scale = (image_shape[0] / low[0], image_shape[1] / low[1]) * 2  # (y0, x0, y1, x1) factors
        sampler = GlimpseSampler(patch_size, name="patch_sampler")
        parts = ClassifierParts(resize, saccader, box_scale, sampler, classifier)
        images = keras.Input(image_shape, name="images")
        outputs = self._forward(parts, images)
        if outputs["logits"].shape[-1] != saccader.num_classes:
            raise ValueError(f"classifier {classifier.name!r} has {outputs['logits'].shape[-1]} classes, the "
                             f"Saccader {saccader.num_classes}.")
        super().__init__(inputs=images, outputs={k: outputs[k] for k in OUTPUT_KEYS}, name=name, **kwargs)
        self.downsize, self.saccader, self.sampler, self.classifier = resize, saccader, sampler, classifier
        self.box_scale = box_scale
        self.patch_size = patch_size
        self.num_glimpses = saccader.num_glimpses

    @staticmethod
    def _forward(parts, images, training=None, freeze_saccader=False):
        low = images if parts.resize is None else parts.resize(images)
        glimpses = parts.saccader(low, training=False if freeze_saccader else training)
        boxes = ops.multiply(glimpses["boxes"], ops.convert_to_tensor(parts.box_scale, dtype="float32"))
        if freeze_saccader:
            boxes = ops.stop_gradient(boxes)
        patches = parts.sampler(images, boxes)  # (B, T, P, P, C)
        steps, patch_shape = patches.shape[1], tuple(patches.shape[2:])
        scores = parts.classifier(ops.reshape(patches, (-1, *patch_shape)), training=training)
        if isinstance(scores, dict):
            scores = scores["logits"]
        step_logits = ops.reshape(ops.cast(scores, "float32"), (-1, steps, scores.shape[-1]))
        return {"logits": ops.mean(step_logits, axis=1), "step_logits": step_logits,
                "locations": glimpses["locations"], "boxes": boxes, "patches": patches}

    def forward(self, images, training=None, freeze_saccader=False):
        """The outputs plus ``patches`` (B, T, P, P, C), the high-resolution patches the classifier read.
        ``freeze_saccader`` runs the Saccader with ``training=False`` and stops gradients at its boxes."""
        return self._forward(self._parts(), images, training, freeze_saccader)

    def _parts(self):
        return ClassifierParts(self.downsize, self.saccader, self.box_scale, self.sampler, self.classifier)

    def downsized(self, images):
        """The images the Saccader sees (area-downsized high-resolution images)."""
        return images if self.downsize is None else self.downsize(images)

    # --------------------------------------------------------------------------------------------- geometry
    @property
    def activation(self):
        return self.saccader.activation

    @property
    def grid_shape(self):
        return self.saccader.grid_shape

    @property
    def scale_factor(self):
        """(height, width) of a high-resolution pixel per Saccader-input pixel: boxes = Saccader boxes x this."""
        return self.box_scale[:2]

    def _check_num_glimpses(self, num_glimpses):
        _check_glimpses(num_glimpses, self.grid_shape)

    # --------------------------------------------------------------------------------------------- training
    stages = Saccader.stages + (
        Stage("classifier", "fine-tune the classification network on the Saccader's patches (Saccader frozen)",
              ("loss", "ce", "l2", "accuracy"), epochs=2, learning_rate=0.05),
    )

    @staticmethod
    def _saccader_stage(stage):
        return stage in {s.name for s in Saccader.stages}

    def _check_stage_options(self, stage, options):
        if self._saccader_stage(stage):
            return self.saccader._check_stage_options(stage, options)
        return options

    def _stage_variables(self, stage):
        if self._saccader_stage(stage):
            return self.saccader._stage_variables(stage)
        return self.classifier.trainable_variables

    def _stage_terms(self, stage, images, labels, training, options):
        if self._saccader_stage(stage):
            # `Saccader._stage_terms` reads the sampling step from ``self.optimizer``: run it on a view of the inner
            # Saccader whose optimizer is this (compiled) model's. Nothing is set on the Saccader itself.
            return Saccader._stage_terms(_SaccaderView(self.saccader, self.optimizer), stage, self.downsized(images),
                                         labels, training, options)
        out = self.forward(images, training=training, freeze_saccader=True)
        return {"per_example": {"ce": aggregated_cross_entropy(out["step_logits"], labels, self.activation)},
                "penalised": penalised_kernels(self.classifier.trainable_variables),
                "stats": {"accuracy": correct(out["logits"], labels, self.activation)}}

    def _constructor_config(self):
        saccader = keras.saving.serialize_keras_object(self.saccader)
        classifier = keras.saving.serialize_keras_object(self.classifier)
        for nested in (saccader, classifier):
            nested.pop("compile_config", None)
        return {
            "saccader": saccader,
            "classifier": classifier,
            "image_shape": list(self.image_shape),
            "patch_size": list(self.patch_size),
            "num_glimpses": self.num_glimpses,
        }


class _SaccaderView:
    """The inner Saccader as its own stage code sees it, except that ``optimizer`` is the outer model's (the
    policy step keys its sampled trajectories on ``optimizer.iterations``)."""

    def __init__(self, saccader, optimizer):
        self._saccader, self.optimizer = saccader, optimizer

    def __getattr__(self, name):
        return getattr(self._saccader, name)
