"""Variational saccading (Ramapuram et al.): a VRNN over a small proxy image proposes T glimpses (scale, x, y) that
a localized spatial transformer cuts from the full-resolution image; a crop classifier reads them (Eq. 5)."""
import collections

import keras
import tensorflow as tf
from keras import ops

from saccade_zoo.layers.glimpse import boxes_to_center_size
from saccade_zoo.layers.pyramid import PyramidLevel, levels_needed, proxy_level as pick_proxy_level
from saccade_zoo.layers.resize import AreaResize
from saccade_zoo.layers.spatial_transformer import LocalizedSpatialTransformer, affine_to_boxes
from saccade_zoo.models.base import GlimpseModel, check_activation, check_model_input, reject_unknown_kwargs, shape_hwc
from saccade_zoo.models.variational.crop import CropClassifier
from saccade_zoo.models.variational.losses import gaussian_kl, gaussian_nll
from saccade_zoo.models.variational.vrnn import ProxyEncoder, VRNNCell
from saccade_zoo.training.losses import aggregated_cross_entropy, correct, label_decisions, penalised_kernels
from saccade_zoo.training.sampling import example_keys, keyed_normal
from saccade_zoo.training.staged import Stage, StagedTrainingMixin

LATENT_DIM = 3  # z = (scale, x, y): the paper's glimpse latent
# The model's own outputs beyond the contract: the VRNN's posterior and prior per step (B, T, 3), pre-squashing.
LATENT_OUTPUTS = ("posterior_mean", "posterior_logvar", "prior_mean", "prior_logvar")

VariationalParts = collections.namedtuple("VariationalParts",
                                          "proxy_level proxy_resize encoder cell window transformer crop")


@keras.saving.register_keras_serializable(package="saccade_zoo")
class GlimpseWindow(keras.layers.Layer):
    """Squashes the VRNN's unbounded latent z = (z_s, z_x, z_y) into a spatial-transformer window
    (s, x, y) (see `saccade_zoo.layers.spatial_transformer`): window side as a fraction of the image side
    ``s = min_scale + (max_scale - min_scale) * sigmoid(z_s)``, centre ``x = (1 - s) tanh(z_x)``,
    ``y = (1 - s) tanh(z_y)``, so that the window ``[x - s, x + s]`` always lies inside the image ([-1, 1]).

    The paper leaves the ranges to the code; the reference clamps the scale to at most 0.3 (and, by a bug, keeps
    it there and the crops in the central 60%). Here the scale moves freely between ``min_scale`` and
    ``max_scale`` and the centre anywhere the window fits. Computed in float32 (coordinates).
    """

    def __init__(self, min_scale=0.1, max_scale=0.4, **kwargs):
        kwargs.pop("autocast", None)
        super().__init__(autocast=False, **kwargs)
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        if not 0.0 < self.min_scale <= self.max_scale <= 1.0:
            raise ValueError(f"Need 0 < min_scale <= max_scale <= 1 (fractions of the image side), got "
                             f"min_scale={min_scale}, max_scale={max_scale}.")

    def call(self, z):
        z = ops.cast(z, "float32")
        s = self.min_scale + (self.max_scale - self.min_scale) * ops.sigmoid(z[..., 0])
        x = (1.0 - s) * ops.tanh(z[..., 1])
        y = (1.0 - s) * ops.tanh(z[..., 2])
        return ops.stack([s, x, y], axis=-1)

    def compute_output_spec(self, z):
        return keras.KerasTensor(z.shape, dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(min_scale=self.min_scale, max_scale=self.max_scale)
        return config


@keras.saving.register_keras_serializable(package="saccade_zoo")
class VariationalSaccader(StagedTrainingMixin, GlimpseModel):
    """Variational saccading (Ramapuram et al.): classify a large image from T glimpses placed by a VRNN that sees
    only a small proxy image.

    Graph (paper section 2, Fig. 2, appendix 7.6):
    - proxy c (J x J x Cp, 32 x 32 by default): by default made inside the model by area-resizing the image
      (`AreaResize`); with ``proxy_input=True`` the model takes ``{"images": x, "proxy": c}`` and the caller passes
      its own (a pyramid level read from disk, or another modality such as a game minimap).
    - `ProxyEncoder` features of c, then T steps of `VRNNCell`: posterior q(z_t | c, h_{t-1}) and learned prior
      p(z_t | h_{t-1}), isotropic Gaussians over z = (scale, x, y); the recurrence never sees a glimpse, so all T
      boxes are known from the proxy alone (what lets the huge-image path read them concurrently).
    - `GlimpseWindow` squashes z into a window inside the image with side between ``min_scale`` and ``max_scale``
      of the image side; `LocalizedSpatialTransformer` cuts an L x L glimpse (``glimpse_size``, 64 in the
      reference) from the full-resolution image by bilinear sampling, differentiable in z (pathwise gradients, no
      REINFORCE), reading only the window's pixels.
    - `CropClassifier` scores each glimpse with the state h_{t-1}; ``logits`` are the mean over the T steps.

    Inference uses the posterior mean of every z_t (no sampling, deterministic, exportable); training samples
    z_t = mu + sigma * eps with keyed noise (`saccade_zoo.training.sampling.keyed_normal`).

    Outputs (dict; contract "continuous"): ``logits`` (B, C), ``step_logits`` (B, T, C), ``locations`` (B, T, 2)
    glimpse centres (y, x) in full-resolution pixels, ``scales`` (B, T, 2) window (height, width) in pixels,
    ``boxes`` (B, T, 4) pixel boxes (y0, x0, y1, x1), and the VRNN's ``posterior_mean``, ``posterior_logvar``,
    ``prior_mean``, ``prior_logvar`` (B, T, 3), before squashing.

    Training (``compile(optimizer, stage="variational")``, then ``fit``): Eq. 5 as a loss per example,
    ``NLL(y | glimpses) + beta * sum_t [ -log p(c | z_<=t) + KL(q(z_t | c, h_{t-1}) || p(z_t | h_{t-1})) ]``,
    a SUM of the classification term and the VRNN's negative ELBO (the authors' code multiplies them: we do not).
    The classification NLL is the cross entropy of the glimpse-averaged logits (softmax for one class or a sum,
    sigmoid for multi-label identification); -log p(c | .) is a unit-variance Gaussian over the proxy pixels
    (`gaussian_nll`, which includes 0.5 log 2 pi per pixel: a constant offset of the loss). ``beta`` = 1 is Eq. 5.

    The stage's default ``beta`` is 0.001, not 1: the ELBO sums 4 x 1024 proxy-pixel terms against one cross
    entropy, and at ``beta`` = 1 its gradient on the posterior's mean head is 3x the classification's (measured at
    initialisation: norms 138 vs 41; on the whole model 15,000 vs 46), so the glimpse locations learn to help
    reconstruct the proxy rather than to classify. The authors' code, which multiplies the two terms, weights the
    classification gradient by the ELBO (~5,000) and the ELBO's by the cross entropy (~7): an effective ``beta`` of
    about 0.0014. On two-item identification (8,000 canvases, 3 epochs) ``beta`` = 0.001 reached 11.0% exact match
    vs 7.6% at ``beta`` = 1 (docs/results.md). ``compile(..., beta=1.0)`` (``tools/train.py --beta=1``) is Eq. 5.

    Where we deviate from the authors' code, and why: the loss is Eq. 5's sum (the code multiplies); the KL reads
    log-variances as log-variances (the code passed one as a standard deviation); windows move freely within
    [min_scale, max_scale] and anywhere inside the image (the code froze the scale at 0.3 and the crops in the
    central 60%); the LST reads the bilinear support plus its one-pixel ring, so it equals the full-image ST (the
    paper's lost 29 points); GroupNorm epsilon 0.1, not 1e-5 (blank glimpses amplified rounding noise, see
    `vrnn.GN_EPSILON`); the first step's prior is a learned constant (`VRNNCell`); the stage's defaults are Adam at
    1e-3 with global-norm clipping at 10 and no weight penalty (the code: Adam 1e-5, clipping by value at 0.25).

    Args:
        image_shape: (H, W, C) of the full-resolution images.
        num_classes: classes (19 for a two-item sum; 10 multi-hot for identification with activation "sigmoid").
        num_glimpses: T (4 in the reference).
        proxy_shape: (J, J, Cp) of the proxy (default (32, 32, C)).
        proxy_input: take the proxy as a second input instead of making it from the image.
        glimpse_size: L.
        min_scale, max_scale: window side range, as fractions of the image side.
        encoder_filters, feature_dim: `ProxyEncoder`.
        units, num_layers, decoder_filters: `VRNNCell` (LSTM units and layers, decoder widths).
        crop_filters, crop_units: `CropClassifier`.
        groups: GroupNormalization groups everywhere.
        activation: "softmax" or "sigmoid" (multi-label).
        posterior_variance: None (learned, the paper's model) or a fixed posterior variance (the paper's ablation).
        pyramid_levels: levels of the in-graph image pyramid the glimpses are sampled from (None: as many as the
            largest window needs, `saccade_zoo.layers.pyramid.levels_needed`; 1 for the 100 x 100 presets, 4 at
            2528 x 2528 with 64 px glimpses and windows up to 64%). A glimpse whose window is >= 2 L pixels reads a
            2 x 2 box-filtered coarser level, as a read from a pyramid TIFF does (`saccade_zoo.inference`), so
            training sees what inference on files sees. (A deviation from the paper's transformer, which
            bilinearly point-samples the full-resolution image: at 2528 px a 1,600 px window sampled at 64 points
            skips 24 of every 25 pixels; its own file path read the full-resolution region.)
        proxy_level: the pyramid level the proxy is area-resized from (None: `saccade_zoo.layers.pyramid.proxy_level`,
            the coarsest level >= 4 x the proxy side: 0 at 100 x 100, 4 at 2528 x 2528), the level a file reader
            reads whole. Ignored (0) with ``proxy_input=True``.
    """

    location_kind = "continuous"

    def __init__(self, image_shape=(100, 100, 1), num_classes=10, num_glimpses=4, proxy_shape=None,
                 proxy_input=False, glimpse_size=64, min_scale=0.1, max_scale=0.4, encoder_filters=(32, 64, 128),
                 feature_dim=256, units=256, num_layers=2, decoder_filters=(64, 32), crop_filters=(32, 64, 128, 256),
                 crop_units=512, groups=8, activation="softmax", posterior_variance=None, pyramid_levels=None,
                 proxy_level=None, name="variational_saccader", **kwargs):
        reject_unknown_kwargs(type(self).__name__, kwargs)
        image_shape = shape_hwc(image_shape)
        proxy_shape = shape_hwc(proxy_shape or (32, 32, image_shape[-1]), "proxy_shape")
        check_activation(activation)
        if int(num_glimpses) < 1:
            raise ValueError(f"num_glimpses must be >= 1, got {num_glimpses}.")
        if not proxy_input and proxy_shape[-1] != image_shape[-1]:
            raise ValueError(f"A proxy made from the image has its channels ({image_shape[-1]}); got proxy_shape "
                             f"{proxy_shape}. Pass proxy_input=True to feed a proxy of another modality.")
        if pyramid_levels is None:
            pyramid_levels = levels_needed(image_shape[0], image_shape[1], float(max_scale), int(glimpse_size))
        if proxy_level is None:
            proxy_level = 0 if proxy_input else pick_proxy_level(image_shape[0], image_shape[1], proxy_shape[:2])
        pyramid_levels, proxy_level = int(pyramid_levels), int(proxy_level)
        if pyramid_levels < 1 or proxy_level < 0 or (proxy_input and proxy_level):
            raise ValueError(f"Need pyramid_levels >= 1 and proxy_level >= 0 (0 with proxy_input=True), got "
                             f"pyramid_levels={pyramid_levels}, proxy_level={proxy_level}.")
        dtype = kwargs.get("dtype")
        parts = VariationalParts(
            proxy_level=PyramidLevel(proxy_level, name="proxy_level", dtype=dtype) if proxy_level else None,
            proxy_resize=None if proxy_input else AreaResize(proxy_shape[:2], name="proxy_resize", dtype=dtype),
            encoder=ProxyEncoder(encoder_filters, feature_dim, groups=groups, name="proxy_encoder", dtype=dtype),
            cell=VRNNCell(proxy_shape, LATENT_DIM, units, num_layers, feature_dim, decoder_filters, groups=groups,
                          posterior_variance=posterior_variance, name="vrnn_cell", dtype=dtype),
            window=GlimpseWindow(min_scale, max_scale, name="glimpse_window"),
            transformer=LocalizedSpatialTransformer(glimpse_size, levels=pyramid_levels,
                                                    name="localized_spatial_transformer", dtype=dtype),
            crop=CropClassifier(num_classes, crop_filters, crop_units, groups=groups, name="crop_classifier",
                                dtype=dtype),
        )
        images = keras.Input(image_shape, name="images")
        inputs = images
        if proxy_input:
            inputs = {"images": images, "proxy": keras.Input(proxy_shape, name="proxy")}
        out = self._forward(parts, images, inputs["proxy"] if proxy_input else None, int(num_glimpses))
        keys = ("logits", "step_logits", "locations", "boxes", "scales") + LATENT_OUTPUTS
        super().__init__(inputs=inputs, outputs={k: out[k] for k in keys}, name=name, **kwargs)
        (self.proxy_level_layer, self.proxy_resize, self.proxy_encoder, self.vrnn_cell, self.glimpse_window,
         self.transformer, self.crop_classifier) = parts
        self.pyramid_levels, self.proxy_level = pyramid_levels, proxy_level
        self._image_shape, self._proxy_shape = image_shape, proxy_shape
        self.num_glimpses, self.proxy_input, self.glimpse_size = int(num_glimpses), bool(proxy_input), int(glimpse_size)
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        self.encoder_filters, self.feature_dim = tuple(int(f) for f in encoder_filters), int(feature_dim)
        self.units, self.num_layers = int(units), int(num_layers)
        self.decoder_filters = tuple(int(f) for f in decoder_filters)
        self.crop_filters, self.crop_units = tuple(int(f) for f in crop_filters), int(crop_units)
        self.groups, self._activation = int(groups), activation
        self.posterior_variance = None if posterior_variance is None else float(posterior_variance)

    @property
    def extra_outputs(self):
        return tuple((name, (self.num_glimpses, LATENT_DIM), "float32") for name in LATENT_OUTPUTS)

    # ----------------------------------------------------------------------------------------------- graph
    @staticmethod
    def _plan(parts, proxy, num_glimpses, noise=None, training=None, decode=False):
        """The VRNN over the proxy: per-step outputs stacked (B, T, ...), the windows ``affine`` (B, T, 3) and the
        states ``h_prev`` (B, T, U) the crop classifier reads. Needs no pixel of the full-resolution image."""
        features = parts.encoder(proxy, training=training)
        states, steps = None, []
        for t in range(num_glimpses):
            eps = None if noise is None else noise[:, t]
            step, states = parts.cell(features, eps, states, training=training, decode=decode)
            steps.append(step)
        stacked = {key: ops.stack([ops.cast(s[key], "float32") for s in steps], axis=1)
                   for key in ("z", "mu_q", "logvar_q", "mu_p", "logvar_p")}
        stacked["affine"] = parts.window(stacked["z"])  # (B, T, 3): (s, x, y)
        stacked["h_prev"] = ops.stack([s["h_prev"] for s in steps], axis=1)
        if decode:
            stacked["reconstruction"] = ops.stack([s["reconstruction"] for s in steps], axis=1)
        return stacked

    @staticmethod
    def _forward(parts, images, proxy, num_glimpses, noise=None, training=None, decode=False):
        if proxy is None:
            level = images if parts.proxy_level is None else parts.proxy_level(images)
            proxy = parts.proxy_resize(level)
        stacked = VariationalSaccader._plan(parts, proxy, num_glimpses, noise, training, decode)
        affine, h_prev = stacked["affine"], stacked["h_prev"]
        glimpses = parts.transformer(images, affine)  # (B, T, L, L, C)
        step_logits = parts.crop(glimpses, h_prev, training=training)
        height, width = images.shape[1], images.shape[2]
        boxes = affine_to_boxes(affine, (height, width))
        centre_size = boxes_to_center_size(boxes)  # (cy, cx, h, w)
        centres, sizes = centre_size[..., :2], centre_size[..., 2:]
        out = {"logits": ops.mean(step_logits, axis=1), "step_logits": step_logits, "locations": centres,
               "boxes": boxes, "scales": sizes, "posterior_mean": stacked["mu_q"],
               "posterior_logvar": stacked["logvar_q"], "prior_mean": stacked["mu_p"],
               "prior_logvar": stacked["logvar_p"], "affine": affine, "glimpses": glimpses, "proxy": proxy}
        if decode:
            out["reconstruction"] = stacked["reconstruction"]
        return out

    def _parts(self):
        return VariationalParts(self.proxy_level_layer, self.proxy_resize, self.proxy_encoder, self.vrnn_cell, self.glimpse_window,
                                self.transformer, self.crop_classifier)

    def forward(self, inputs, noise=None, training=None, decode=False, num_glimpses=None):
        """Everything the training step needs: the outputs plus ``affine`` (B, T, 3) windows, ``glimpses``,
        ``proxy`` and (``decode=True``) the VRNN's ``reconstruction`` (B, T, J, J, Cp). ``noise`` (B, T, 3):
        reparameterisation draws (None: the posterior means)."""
        images, proxy = self._split_inputs(inputs)
        return self._forward(self._parts(), images, proxy, num_glimpses or self.num_glimpses, noise, training,
                             decode)

    def plan(self, proxy):
        """Inference's first half: the VRNN over ``proxy`` (B, J, J, Cp), model-ready) with the posterior means.
        Returns ``affine`` (B, T, 3) windows (s, x, y) and ``h_prev`` (B, T, U): the windows need no pixel of the
        full-resolution image, so a file reader can fetch all T glimpses at once (`saccade_zoo.inference`).
        Pixel boxes of an H x W image: ``affine_to_boxes(affine, (H, W))``."""
        stacked = self._plan(self._parts(), ops.convert_to_tensor(proxy), self.num_glimpses, training=False)
        return {"affine": stacked["affine"], "h_prev": stacked["h_prev"]}

    def classify_glimpses(self, glimpses, h_prev):
        """Inference's second half: step logits (B, T, classes) of glimpses (B, T, L, L, C) (model-ready) read at
        the windows of :meth:`plan`, with its ``h_prev``. The model's logits are their mean over T."""
        return self.crop_classifier(ops.convert_to_tensor(glimpses), ops.convert_to_tensor(h_prev), training=False)

    # ----------------------------------------------------------------------------------------------- input
    def _split_inputs(self, inputs):
        if self.proxy_input:
            if not isinstance(inputs, dict) or set(inputs) != {"images", "proxy"}:
                raise ValueError(f"{type(self).__name__} '{self.name}' was built with proxy_input=True: pass "
                                 "{'images': images, 'proxy': proxy}.")
            return inputs["images"], inputs["proxy"]
        if isinstance(inputs, dict):
            if set(inputs) != {"images"}:
                raise ValueError(f"{type(self).__name__} '{self.name}' makes its proxy from the image "
                                 f"(proxy_input=False): pass the images only, got inputs {sorted(inputs)}.")
            return inputs["images"], None
        return inputs, None

    @property
    def image_shape(self):
        return self._image_shape

    @property
    def proxy_shape(self):
        return self._proxy_shape

    def _validate(self, x):
        images, proxy = self._split_inputs(x)
        where = f"{type(self).__name__} '{self.name}'"
        check_model_input(images, self.image_shape, where)
        if proxy is not None:
            check_model_input(proxy, self.proxy_shape, f"{where} (proxy input)")

    # ------------------------------------------------------------------------------------------- training
    stages = (Stage("variational", "Eq. 5: classification NLL + beta * (VRNN reconstruction NLL + KL), summed",
                    ("loss", "ce", "reconstruction", "kl", "l2", "accuracy", "label_accuracy"),
                    options=dict(beta=1e-3, sampling_seed=0, weight_decay=0.0),
                    epochs=10, learning_rate=1e-3, optimizer="adam", clipnorm=10.0),)

    def _check_stage_options(self, stage, options):
        """beta (weight of the VRNN ELBO, 1 = Eq. 5), sampling_seed (salt of the keyed latent noise);
        weight_decay defaults to 0 here (the paper trains with Adam and no weight penalty)."""
        options["beta"] = float(options["beta"])
        if options["beta"] < 0:
            raise ValueError(f"beta must be >= 0, got {options['beta']}.")
        options["sampling_seed"] = int(options["sampling_seed"])
        return options

    def _stage_variables(self, stage):
        return self.trainable_variables

    def _stage_terms(self, stage, inputs, labels, training, options):
        images, _ = self._split_inputs(inputs)
        noise = None
        if training:
            noise = keyed_normal(example_keys(images), self.optimizer.iterations, 0, (self.num_glimpses, LATENT_DIM),
                                 options["sampling_seed"])
        out = self.forward(inputs, noise=noise, training=training, decode=True)
        ce = aggregated_cross_entropy(out["step_logits"], labels, self.activation)
        proxy = ops.cast(out["proxy"], "float32")
        reconstruction = tf.add_n([gaussian_nll(proxy, out["reconstruction"][:, t])
                                   for t in range(self.num_glimpses)])
        kl = tf.reduce_sum(gaussian_kl(out["posterior_mean"], out["posterior_logvar"], out["prior_mean"],
                                       out["prior_logvar"]), axis=1)
        stats = {"accuracy": correct(out["logits"], labels, self.activation)}
        if self.activation == "sigmoid":
            stats["label_accuracy"] = tf.reduce_mean(label_decisions(out["logits"], labels), axis=-1)
        return {"per_example": {"ce": ce, "reconstruction": options["beta"] * reconstruction,
                                "kl": options["beta"] * kl},
                "penalised": penalised_kernels(self.trainable_variables),
                "stats": stats}

    def _stage_metric_names(self, stage):
        names = stage.metrics
        return names if self.activation == "sigmoid" else tuple(n for n in names if n != "label_accuracy")

    # ----------------------------------------------------------------------------------------------- config
    def _constructor_config(self):
        return {
            "image_shape": list(self.image_shape),
            "num_classes": self.num_classes,
            "num_glimpses": self.num_glimpses,
            "proxy_shape": list(self.proxy_shape),
            "proxy_input": self.proxy_input,
            "glimpse_size": self.glimpse_size,
            "min_scale": self.min_scale,
            "max_scale": self.max_scale,
            "encoder_filters": list(self.encoder_filters),
            "feature_dim": self.feature_dim,
            "units": self.units,
            "num_layers": self.num_layers,
            "decoder_filters": list(self.decoder_filters),
            "crop_filters": list(self.crop_filters),
            "crop_units": self.crop_units,
            "groups": self.groups,
            "activation": self.activation,
            "posterior_variance": self.posterior_variance,
            "pyramid_levels": self.pyramid_levels,
            "proxy_level": self.proxy_level,
        }
