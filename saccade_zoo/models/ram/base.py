"""The shared base of the recurrent attention models (RAM, DRAM): the glimpse loop with a Gaussian location policy,
the contract's outputs and the hybrid training stage (cross entropy + REINFORCE), written once for both."""
import keras
import tensorflow as tf
from keras import ops

from saccade_zoo.layers.glimpse import glimpse_boxes, normalized_to_pixels
from saccade_zoo.models.base import GlimpseModel
from saccade_zoo.models.ram.losses import baseline_regression, gaussian_reinforce
from saccade_zoo.training.losses import aggregated_cross_entropy, correct, label_decisions, penalised_kernels
from saccade_zoo.training.sampling import example_keys, keyed_normal, keyed_uniform
from saccade_zoo.training.staged import Stage, StagedTrainingMixin, global_mean

POLICIES = ("learned", "random")
STEP_LOSSES = ("last", "all")
# Outputs beyond the contract: the locations in normalised coordinates ([-1, 1], (y, x)), as the policy emits them.
EXTRA_OUTPUTS = ("normalized_locations",)


class RecurrentAttentionModel(StagedTrainingMixin, GlimpseModel):
    """Base of RAM and DRAM: T glimpses, each placed by a Gaussian policy N(mean(h), std^2 I) on the recurrent
    state; ``step_logits[:, t]`` are read from the state after glimpse t (contract aggregation "last": the
    prediction after t glimpses), ``logits`` the last step's.

    A subclass provides the parts (a namedtuple with at least ``centre`` (a `Zeros` layer of dims (2,)),
    ``classifier``, ``location`` (a `LocationNetwork`, None for the random policy), ``baseline`` (a Dense(1) on
    the location state, or None for the batch-mean baseline) and ``random`` (`RandomLocations` or None)) and two
    class methods:

    - ``_begin(parts, images, training) -> (state, location_features)``: the initial recurrent state, and the
      features the first location is emitted from (DRAM's context), or None (RAM: the first glimpse is at the
      image centre and is not an action of the policy);
    - ``_step(parts, images, locations, state, training) -> (state, class_features, location_features)``: one
      glimpse at ``locations`` (B, 2) in [-1, 1].

    Locations are never differentiated through: the sampled (training) or mean (inference) location reaches the
    glimpse through ``stop_gradient``, so the location network learns from REINFORCE only, and the cross entropy
    trains the glimpse, core and classification networks (RAM's hybrid loss, section 3.2). Training samples with
    keyed noise (`saccade_zoo.training.sampling`): a resumed or replicated run draws what one device would; the
    samples are clipped into [-1, 1] before the glimpse, the log-probability is that of the unclipped draw.
    Inference uses the policy's mean (deterministic, exportable).
    """

    location_kind = "continuous"
    aggregation = "last"
    policy = "learned"

    # ------------------------------------------------------------------------------------------------- graph
    @classmethod
    def _begin(cls, parts, images, training):
        raise NotImplementedError

    @classmethod
    def _step(cls, parts, images, locations, state, training):
        raise NotImplementedError

    @classmethod
    def _run(cls, parts, images, num_glimpses, fovea, std=0.1, noise=None, random_locations=None, training=None):
        state, location_features = cls._begin(parts, images, training)
        if parts.random is not None and random_locations is None:
            random_locations = parts.random(images)
        actions = []

        def choose(features, t):
            if random_locations is not None:
                return random_locations[:, t]
            mean = parts.location(features)
            baseline = None if parts.baseline is None else parts.baseline(ops.stop_gradient(features))[:, 0]
            sample = mean if noise is None else mean + float(std) * noise[:, len(actions)]
            actions.append((mean, sample, baseline))
            return ops.stop_gradient(ops.clip(sample, -1.0, 1.0))

        if location_features is None and random_locations is None:
            location = parts.centre(images)[0]  # RAM: the first glimpse at the image centre
        else:
            location = choose(location_features, 0)
        locations, step_logits = [], []
        for t in range(num_glimpses):
            locations.append(location)
            state, class_features, location_features = cls._step(parts, images, location, state, training)
            step_logits.append(ops.cast(parts.classifier(class_features), "float32"))
            if t < num_glimpses - 1:
                location = choose(location_features, t + 1)
        step_logits = ops.stack(step_logits, axis=1)  # (B, T, C)
        normalized = ops.stack(locations, axis=1)  # (B, T, 2)
        centres = normalized_to_pixels(normalized, images.shape[1:3])
        scales = ops.ones_like(centres) * ops.convert_to_tensor(list(fovea), dtype="float32")
        out = {"logits": step_logits[:, -1], "step_logits": step_logits, "locations": centres,
               "boxes": glimpse_boxes(centres, scales), "scales": scales, "normalized_locations": normalized}
        if actions:
            out["means"] = ops.stack([a[0] for a in actions], axis=1)  # (B, K, 2)
            out["samples"] = ops.stack([a[1] for a in actions], axis=1)
            if parts.baseline is not None:
                out["baselines"] = ops.stack([a[2] for a in actions], axis=1)  # (B, K)
        return out

    def forward(self, images, noise=None, random_locations=None, training=None, num_glimpses=None):
        """Everything the training step needs: the outputs plus, for the learned policy, ``means`` and ``samples``
        (B, K, 2) of the K location actions and ``baselines`` (B, K) (a learned baseline). ``noise`` (B, T, 2):
        standard-normal draws of the policy (None: its means); ``random_locations`` (B, T, 2) in [-1, 1]: the
        random-glimpse baseline's locations (None: drawn by its layer)."""
        return self._run(self._parts(), images, num_glimpses or self.num_glimpses, self.fovea, self.location_std,
                         noise, random_locations, training)

    @property
    def extra_outputs(self):
        return tuple((name, (self.num_glimpses, 2), "float32") for name in EXTRA_OUTPUTS)

    def _constructor_config(self):
        """The entries every recurrent attention model has; a family adds its network's (``_network_config``)."""
        return {"image_shape": list(self.image_shape), "num_classes": self.num_classes,
                "num_glimpses": self.num_glimpses, **self._network_config(), "location_std": self.location_std,
                "policy": self.policy, "activation": self.activation, "seed": self.seed}

    def _network_config(self):
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------- training
    stages = (Stage("reinforce", "RAM's hybrid loss: cross entropy of the classification + REINFORCE on the sampled "
                    "locations (with the baseline's regression on the reward)",
                    ("loss", "ce", "reinforce", "baseline", "l2", "reward", "accuracy", "label_accuracy"),
                    options=dict(reinforce_weight=0.01, step_loss="last", sampling_seed=0, weight_decay=0.0),
                    epochs=20, learning_rate=1e-3, optimizer="adam", clipnorm=5.0),)

    def _check_stage_options(self, stage, options):
        """reinforce_weight (the REINFORCE term's weight; default 0.01: RAM's hybrid loss sums the terms (weight
        1), but with std 0.1 the REINFORCE gradient on the policy's mean is (l - mu) / std^2 ~ 10x the advantage per
        action, and at weight 1 the policy collapsed into the image corners within an epoch (tanh saturated; 60x60
        cluttered Fashion-MNIST, 10,000 canvases, 5 epochs: 23.3% top-1 vs 46.7% at 0.01 and 39.8% at 0.1); the
        Saccader authors' DRAM used 0.1), step_loss ("last": the cross
        entropy of the last step's logits, the papers'; "all": the mean over the T steps, which also trains the
        earlier steps' predictions), sampling_seed (salt of the keyed location noise); weight_decay (0: the papers
        train without a weight penalty)."""
        options["reinforce_weight"] = float(options["reinforce_weight"])
        if options["reinforce_weight"] < 0:
            raise ValueError(f"reinforce_weight must be >= 0, got {options['reinforce_weight']}.")
        if options["step_loss"] not in STEP_LOSSES:
            raise ValueError(f"step_loss must be one of {STEP_LOSSES}, got {options['step_loss']!r}.")
        options["sampling_seed"] = int(options["sampling_seed"])
        return options

    def _stage_metric_names(self, stage):
        names = stage.metrics
        return names if self.activation == "sigmoid" else tuple(n for n in names if n != "label_accuracy")

    def _stage_variables(self, stage):
        return self.trainable_variables

    def _stage_terms(self, stage, images, labels, training, options):
        keys = example_keys(images)
        step = self.optimizer.iterations if training else 0
        shape = (self.num_glimpses, 2)
        noise = random = None
        if self.policy == "random":  # keyed draws: evaluation sees the same locations every epoch
            random = keyed_uniform(keys, step, 1, shape, seed=options["sampling_seed"])
        elif training:
            noise = keyed_normal(keys, step, 0, shape, options["sampling_seed"])
        out = self.forward(images, noise=noise, random_locations=random, training=training)
        activation = self.activation
        if options["step_loss"] == "all":
            ce = tf.add_n([aggregated_cross_entropy(out["step_logits"][:, t], labels, activation)
                           for t in range(self.num_glimpses)]) / float(self.num_glimpses)
        else:
            ce = aggregated_cross_entropy(out["logits"], labels, activation)
        reward = correct(out["logits"], labels, activation)  # 1 when right (every label right, multi-label)
        zeros = tf.zeros_like(reward)
        reinforce = baseline = zeros
        if "means" in out:
            actions = out["means"].shape[1]
            if "baselines" in out:
                baseline = baseline_regression(out["baselines"], reward)
                advantages = reward[:, None] - tf.cast(out["baselines"], tf.float32)
            else:  # the batch-mean baseline (the Saccader authors' DRAM), over the global batch
                advantages = tf.tile((reward - global_mean(reward))[:, None], [1, actions])
            if training:
                reinforce = options["reinforce_weight"] * gaussian_reinforce(out["samples"], out["means"],
                                                                             self.location_std, advantages)
        stats = {"reward": reward, "accuracy": reward}
        if activation == "sigmoid":
            stats["label_accuracy"] = tf.reduce_mean(label_decisions(out["logits"], labels), axis=-1)
        return {"per_example": {"ce": ce, "reinforce": reinforce, "baseline": baseline},
                "penalised": penalised_kernels(self.trainable_variables),
                "stats": stats}


def check_policy(policy, location_std):
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}.")
    if not float(location_std) > 0:
        raise ValueError(f"location_std must be positive, got {location_std}.")


def classifier_head(num_classes):
    """The classification (action) network: one Dense layer to the class logits, float32 under every policy."""
    return keras.layers.Dense(int(num_classes), name="classifier", dtype="float32")


def baseline_head():
    """A learned baseline b_t = Linear(h_t) on the (gradient-stopped) location state, float32."""
    return keras.layers.Dense(1, name="baseline", dtype="float32")
