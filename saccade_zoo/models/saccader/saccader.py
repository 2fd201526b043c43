"""Saccader (Elsayed, Kornblith, Le 2019): BagNet-lowD + attention network + mixing conv + Saccader cell; and the
engineered-policy baselines on the same BagNet (`PolicyClassifier`)."""
import collections

import keras
import tensorflow as tf

from saccade_zoo.contract import OutputContract
from saccade_zoo.models.saccader.attention import AttentionNetwork
from saccade_zoo.models.saccader.readout import GlimpseReadout
from saccade_zoo.models.saccader.policies import EngineeredPolicy
from saccade_zoo.models.saccader.cell import SaccaderCell
from saccade_zoo.models.bagnet.backbone import BagNet
from saccade_zoo.models.base import GlimpseModel, reject_unknown_kwargs
from saccade_zoo.models.saccader.losses import (LOCATION_OBJECTIVES, LOCATION_TARGETS, location_objective_scale,
                                                location_targets, reinforce_loss)
from saccade_zoo.training.losses import aggregated_cross_entropy, correct, penalised_kernels
from saccade_zoo.training.sampling import example_keys, keyed_gumbel
from saccade_zoo.training.staged import Stage, StagedTrainingMixin, global_mean

# The outputs of a grid glimpse model, as the contract declares them.
OUTPUT_KEYS = tuple(OutputContract(num_classes=1, num_glimpses=1, location_kind="grid").output_specs())

# The Saccader's sub-networks, by name (what `Saccader.forward` runs).
SaccaderParts = collections.namedtuple("SaccaderParts", "backbone attention where_what mixing cell readout")


def _as_backbone(backbone):
    if isinstance(backbone, dict):
        backbone = keras.saving.deserialize_keras_object(backbone)
    if not isinstance(backbone, BagNet):
        raise ValueError(f"backbone must be a saccade_zoo BagNet, got {type(backbone).__name__}.")
    return backbone


def _check_glimpses(num_glimpses, grid_shape):
    cells = grid_shape[0] * grid_shape[1]
    if not 1 <= int(num_glimpses) <= cells:
        raise ValueError(
            f"num_glimpses must be between 1 and the {grid_shape[0]}x{grid_shape[1]} = {cells} cells of the "
            f"feature grid (a trajectory never revisits a cell), got {num_glimpses}."
        )


class BagNetGlimpseModel(GlimpseModel):
    """A glimpse model that reads a BagNet's logits map at grid cells (Saccader, engineered policies): grid
    locations, at most one glimpse per cell, images at least one receptive field wide, the BagNet's activation."""

    location_kind = "grid"

    @property
    def receptive_field(self):
        return self.backbone.receptive_field

    @property
    def min_input_size(self):
        return self.backbone.receptive_field

    @property
    def grid_shape(self):
        return self.backbone.grid_shape

    @property
    def activation(self):
        return self.backbone.activation

    def _check_num_glimpses(self, num_glimpses):
        _check_glimpses(num_glimpses, self.grid_shape)

    def with_policy(self, policy, num_glimpses=None, seed=None):
        """An engineered-policy classifier on this model's backbone (shared weights, not a copy)."""
        return PolicyClassifier(self.backbone, policy=policy, num_glimpses=num_glimpses or self.num_glimpses,
                                seed=seed, metadata=self.metadata)


@keras.saving.register_keras_serializable(package="saccade_zoo")
class Saccader(StagedTrainingMixin, BagNetGlimpseModel):
    """The Saccader hard-attention classifier.

    Graph (paper Fig. 2, section 3.1): images -> BagNet-lowD -> {2048-d features, 512-d "what" features,
    logits map}; "where" = AttentionNetwork(features); mixed F = 1x1 conv (with bias, no activation) of
    concat(where, what) to ``mixing_dim``; the SaccaderCell proposes T cells on F; the prediction is the mean
    of the logits map read at those cells. Only the BagNet's 77 px receptive field reaches the class scores.

    Outputs (dict): ``logits`` (B, C), ``step_logits`` (B, T, C), ``locations`` (B, T, 2) int32 grid (row,
    col), ``boxes`` (B, T, 4) pixel boxes (y0, x0, y1, x1), half-open. Glimpses are argmax cells at inference
    and sampled from the policy when called with ``training=True``. ``with_glimpses(n)`` changes T.

    Training (paper section 3.2) runs through ``fit`` after ``compile(optimizer, stage=...)``:
    ``"representation"`` (Eq. 4, BagNet only), ``"location"`` (Eq. 5, T = 12, BagNet frozen: no gradient and
    BatchNorm statistics fixed) and ``"policy"`` (Eq. 6, REINFORCE with S sampled trajectories and a batch-mean
    baseline + cross entropy on the glimpse-averaged logits, whole model). See `StagedTrainingMixin.compile`.
    Deviation: the policy step clips the global gradient norm at 1 (``Stage.clipnorm``, used by
    ``tools/train.py``; with your own optimizer pass ``global_clipnorm=1.0``). The paper states no clipping; without
    it the cross entropy at cells of extreme logits retrained a small-data BagNet with too large steps and the
    step collapsed (see `saccade_zoo.models.saccader.losses.location_targets`).

    Args:
        backbone: a `BagNet` (or its serialized config).
        num_glimpses: T at inference (6 in the paper's policy-gradient step).
        attention_filters: widths of the attention network, (1024, 512) in the paper.
        mixing_dim: channels of the mixed features F (512 in the paper).
        seed: seed of the cell's sampling stream (training).
    """

    def __init__(self, backbone, num_glimpses=6, attention_filters=(1024, 512), mixing_dim=512, dilation_rate=2,
                 seed=None, name="saccader", **kwargs):
        reject_unknown_kwargs(type(self).__name__, kwargs)
        backbone = _as_backbone(backbone)
        _check_glimpses(num_glimpses, backbone.grid_shape)
        # Mixed precision: the location network follows `dtype` (default: the backbone's policy); the cell (its
        # log-policy feeds REINFORCE) and the readout (the class scores) are float32 heads under every policy.
        dtype = kwargs.get("dtype") or backbone.dtype_policy
        attention = AttentionNetwork(attention_filters, dilation_rate=dilation_rate, name="attention_network",
                                     synchronized_bn=backbone.synchronized_bn, dtype=dtype)
        concat = keras.layers.Concatenate(axis=-1, name="where_what", dtype=dtype)
        mixing = keras.layers.Conv2D(mixing_dim, 1, use_bias=True, name="mixing", dtype=dtype)
        cell = SaccaderCell(num_glimpses, seed=seed, name="saccader_cell", dtype="float32")
        readout = GlimpseReadout(backbone.stride, backbone.receptive_field, name="glimpse_readout", dtype="float32")
        parts = SaccaderParts(backbone, attention, concat, mixing, cell, readout)

        images = keras.Input(backbone.image_shape, name="images")
        outputs = self._forward(parts, images)
        super().__init__(inputs=images, outputs={k: outputs[k] for k in OUTPUT_KEYS}, name=name, **kwargs)
        self.backbone, self.attention_network, self.where_what, self.mixing, self.cell, self.readout = parts
        self.num_glimpses = int(num_glimpses)
        self.attention_filters = tuple(int(f) for f in attention_filters)
        self.mixing_dim = int(mixing_dim)
        self.dilation_rate = int(dilation_rate)
        self.seed = seed

    @staticmethod
    def _forward(parts, images, training=None, forced_locations=None, num_glimpses=None, sampling_noise=None,
                 backbone_training=None, bag=None):
        if bag is None:
            bag = parts.backbone(images, training=training if backbone_training is None else backbone_training)
        where = parts.attention(bag["features"], training=training)
        mixed = parts.mixing(parts.where_what([where, bag["what"]]))
        policy = parts.cell(mixed, forced_locations=forced_locations, num_glimpses=num_glimpses,
                            sampling_noise=sampling_noise, training=training)
        glimpses = parts.readout(bag["logits_map"], policy["locations"])
        return {
            **glimpses,
            "cell_locations": policy["locations"],
            "location_logits": policy["location_logits"],
            "logits_map": bag["logits_map"],
            "bagnet_logits": bag["logits"],
            "mixed": mixed,
        }

    def forward(self, images, training=None, forced_locations=None, num_glimpses=None, sampling_noise=None,
                backbone_training=None, bag=None):
        """Everything the training steps need in one pass: the outputs plus ``location_logits`` (B, T, h*w),
        ``cell_locations`` (B, T) flat indices, ``logits_map``, ``bagnet_logits`` (the all-cells mean) and the
        mixed features. ``backbone_training`` runs the BagNet in another mode (False: frozen statistics);
        ``bag`` reuses BagNet outputs already computed (several trajectories over one image)."""
        return self._forward(self._parts(), images, training, forced_locations, num_glimpses, sampling_noise,
                             backbone_training, bag)

    def _parts(self):
        return SaccaderParts(self.backbone, self.attention_network, self.where_what, self.mixing, self.cell,
                             self.readout)

    # ------------------------------------------------------------------------------------------- training
    stages = (
        BagNet.stages[0],  # Eq. 4 trains the BagNet alone: its own step
        Stage("location", "Eq. 5: location pretraining on the BagNet's ranked cells (BagNet frozen)",
              ("loss", "location_ce", "l2", "location_accuracy"),
              options=dict(location_glimpses=12, location_objective="mean", location_targets="max_logit"),
              epochs=1, learning_rate=0.1),
        Stage("policy", "Eq. 6: REINFORCE on sampled trajectories + cross entropy on the glimpses (whole model)",
              ("loss", "reinforce", "ce", "l2", "reward", "accuracy"),
              options=dict(num_glimpses=None, num_trajectories=2, reinforce_weight=1.0, sampling_seed=0),
              epochs=2, learning_rate=0.01, clipnorm=1.0),
    )

    def _check_stage_options(self, stage, options):
        """location_glimpses (T of Eq. 5, 12 in the paper), location_objective ("mean": Eq. 5 / T, default; "sum":
        Eq. 5 as written; see `saccade_zoo.models.saccader.losses.location_objective_scale`), location_targets
        ("max_logit": the paper's cells of largest maximum logit, default; "predicted_class": the authors' code's
        cells of the predicted class; see `saccade_zoo.models.saccader.losses.location_targets`); num_glimpses (T of
        Eq. 6, default the model's), num_trajectories (S, 2 in the paper), reinforce_weight (1 in Eq. 6),
        sampling_seed (salt of the keyed trajectory sampling)."""
        if stage == "location":
            if options["location_objective"] not in LOCATION_OBJECTIVES:
                raise ValueError(f"location_objective must be one of {LOCATION_OBJECTIVES}, got "
                                 f"{options['location_objective']!r}.")
            if options["location_targets"] not in LOCATION_TARGETS:
                raise ValueError(f"location_targets must be one of {LOCATION_TARGETS}, got "
                                 f"{options['location_targets']!r}.")
            options["location_glimpses"] = int(options["location_glimpses"])
            _check_glimpses(options["location_glimpses"], self.grid_shape)
        if stage == "policy":
            if int(options["num_trajectories"]) < 1:
                raise ValueError(f"num_trajectories must be >= 1, got {options['num_trajectories']}.")
            options.update(num_trajectories=int(options["num_trajectories"]),
                           reinforce_weight=float(options["reinforce_weight"]),
                           sampling_seed=int(options["sampling_seed"]))
            if options["num_glimpses"] is not None:
                options["num_glimpses"] = int(options["num_glimpses"])
                _check_glimpses(options["num_glimpses"], self.grid_shape)
        return options

    def penalised_variables(self):
        """What the weight penalty sees in the policy step: every kernel and the cell's attention vector."""
        return penalised_kernels(self.trainable_variables, extra=[self.cell.attention_vector])

    def location_variables(self):
        """The location network's trainable weights: attention network, mixing conv, Saccader cell."""
        return (self.attention_network.trainable_variables + self.mixing.trainable_variables
                + self.cell.trainable_variables)

    def _stage_variables(self, stage):
        if stage == "representation":
            return self.backbone.trainable_variables
        if stage == "location":
            return self.location_variables()
        return self.trainable_variables

    def _stage_terms(self, stage, images, labels, training, options):
        if stage == "representation":  # Eq. 4 trains the BagNet alone: its own step
            return self.backbone._stage_terms(stage, images, labels, training, options)
        if stage == "location":
            steps = options["location_glimpses"]
            bag = {k: tf.stop_gradient(v) for k, v in self.backbone(images, training=False).items()}
            targets = location_targets(bag["logits_map"], steps, options["location_targets"])
            out = self.forward(images, training=training, forced_locations=targets, num_glimpses=steps, bag=bag)
            step_ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=out["location_logits"])
            hits = tf.equal(tf.math.argmax(out["location_logits"], axis=-1, output_type=tf.int32), targets)
            return {"per_example": {"location_ce": tf.reduce_sum(step_ce, axis=1)},
                    "penalised": penalised_kernels(self.location_variables(), extra=[self.cell.attention_vector]),
                    "scale": location_objective_scale(options["location_objective"], steps),
                    "stats": {"location_accuracy": tf.reduce_mean(tf.cast(hits, tf.float32), axis=1)}}
        steps = options["num_glimpses"] or self.num_glimpses
        bag = self.backbone(images, training=training)
        activation = self.activation
        if not training:  # evaluation: the argmax policy, no REINFORCE term
            out = self.forward(images, training=False, num_glimpses=steps, bag=bag)
            accuracy = correct(out["logits"], labels, activation)
            return {"per_example": {"ce": aggregated_cross_entropy(out["step_logits"], labels, activation)},
                    "penalised": self.penalised_variables(),
                    "stats": {"accuracy": accuracy, "reward": accuracy}}
        keys = example_keys(images)
        cells = self.grid_shape[0] * self.grid_shape[1]
        trajectories = []
        for s in range(options["num_trajectories"]):
            noise = keyed_gumbel(keys, self.optimizer.iterations, s, (steps, cells), options["sampling_seed"])
            out = self.forward(images, training=True, num_glimpses=steps, sampling_noise=noise, bag=bag)
            trajectories.append((out, correct(out["logits"], labels, activation)))
        baseline = global_mean(tf.stack([reward for _, reward in trajectories]))
        reinforce = tf.add_n([reinforce_loss(out["location_logits"], out["cell_locations"], reward - baseline)
                              for out, reward in trajectories])
        ce = tf.add_n([aggregated_cross_entropy(out["step_logits"], labels, activation) for out, _ in trajectories])
        ce = ce / float(len(trajectories))
        reward = tf.add_n([reward for _, reward in trajectories]) / float(len(trajectories))
        return {"per_example": {"reinforce": options["reinforce_weight"] * reinforce, "ce": ce},
                "penalised": self.penalised_variables(),
                "stats": {"reward": reward, "accuracy": reward}}

    def _constructor_config(self):
        return {
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_glimpses": self.num_glimpses,
            "attention_filters": list(self.attention_filters),
            "mixing_dim": self.mixing_dim,
            "dilation_rate": self.dilation_rate,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="saccade_zoo")
class PolicyClassifier(BagNetGlimpseModel):
    """A BagNet read at the cells an engineered policy picks (paper section 4.1's baselines).

    Same outputs as `Saccader`, so every policy is evaluated through the same code. ``policy`` is one of
    ``random``, ``center``, ``ordered_logits``, ``sobel_mean``, ``sobel_var`` (see `EngineeredPolicy`).
    """

    def __init__(self, backbone, policy="ordered_logits", num_glimpses=6, seed=None, name=None, **kwargs):
        reject_unknown_kwargs(type(self).__name__, kwargs)
        backbone = _as_backbone(backbone)
        _check_glimpses(num_glimpses, backbone.grid_shape)
        chooser = EngineeredPolicy(policy, num_glimpses, backbone.stride, backbone.receptive_field, seed=seed,
                                   name=f"{policy}_policy", dtype=kwargs.get("dtype") or backbone.dtype_policy)
        readout = GlimpseReadout(backbone.stride, backbone.receptive_field, name="glimpse_readout", dtype="float32")
        images = keras.Input(backbone.image_shape, name="images")
        bag = backbone(images)
        outputs = readout(bag["logits_map"], chooser(bag["logits_map"], images))
        super().__init__(inputs=images, outputs={k: outputs[k] for k in OUTPUT_KEYS}, name=name or policy, **kwargs)
        self.backbone, self.policy_layer, self.readout = backbone, chooser, readout
        self.policy, self.num_glimpses, self.seed = policy, int(num_glimpses), seed

    def _constructor_config(self):
        return {
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "policy": self.policy,
            "num_glimpses": self.num_glimpses,
            "seed": self.seed,
        }
