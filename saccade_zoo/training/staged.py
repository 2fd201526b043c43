"""Staged training through ``model.fit``: ``model.compile(optimizer, stage=...)`` picks one of the Saccader
paper's three training steps (section 3.2); ``train_step`` / ``test_step`` implement it.

Under a ``tf.distribute`` strategy every term is scaled for the global batch: per-example terms are summed
over the local batch and divided by the global batch size, the weight penalty is divided by the number of
replicas (gradients are summed over replicas), and the REINFORCE baseline is the mean reward of the *global*
batch (an all-reduce). With synchronized BatchNorm and keyed sampling, N replicas give the weights of 1 device.
"""
import keras
import tensorflow as tf

from saccade_zoo.training.losses import l2_penalty, location_objective_scale

STAGES = ("representation", "location", "policy")

# Metrics reported by each stage (loss first).
STAGE_METRICS = {
    "representation": ("loss", "ce", "l2", "accuracy"),
    "location": ("loss", "location_ce", "l2", "location_accuracy"),
    "policy": ("loss", "reinforce", "ce", "l2", "reward", "accuracy"),
}

_DEFAULTS = dict(stage="representation", weight_decay=1e-4, l2_reduction="sum", location_glimpses=12,
                 num_glimpses=None, num_trajectories=2, reinforce_weight=1.0, sampling_seed=0)


def global_mean(values):
    """Mean of ``values`` over the global batch (all replicas)."""
    total, count = tf.reduce_sum(values), tf.cast(tf.size(values), values.dtype)
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
        total, count = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [total, count])
    return total / count


def unpack_labels(y):
    if y is None:
        raise ValueError("Training a saccade_zoo classifier needs labels: fit(x, y) or a dataset of (images, labels).")
    y = tf.convert_to_tensor(y)
    if y.shape.rank == 2 and y.shape[-1] == 1:
        y = y[:, 0]
    if y.shape.rank != 1 or y.dtype.is_floating:
        raise ValueError(
            f"Labels must be integer class indices of shape (batch,), got {y.dtype.name} {tuple(y.shape)}. "
            "(Multi-hot targets such as two-item identification need a multi-label head; use task='sum' or 'single'.)"
        )
    return tf.cast(y, tf.int32)


class StagedTrainingMixin:
    """Adds ``compile(stage=...)`` and staged ``train_step`` / ``test_step`` to a zoo model.

    A model provides ``supported_stages``, ``_stage_variables(stage)`` and
    ``_stage_terms(stage, images, labels, training, options)``, which returns a dict with
    ``per_example`` (name -> (B,) loss terms, summed into the loss), ``penalised`` (variables for the
    weight penalty) and ``stats`` (name -> (B,) values averaged into metrics).
    """

    supported_stages = ("representation",)

    def compile(self, optimizer="sgd", stage="representation", weight_decay=1e-4, l2_reduction="sum",
                location_glimpses=12, num_glimpses=None, num_trajectories=2, reinforce_weight=1.0, sampling_seed=0,
                location_objective="mean", **kwargs):
        """Configure one training step of the paper.

        Args:
            optimizer: any Keras optimizer (the paper: SGD with Nesterov momentum 0.9).
            stage: "representation" (Eq. 4: BagNet on all locations), "location" (Eq. 5: location
                pretraining, BagNet frozen) or "policy" (Eq. 6: REINFORCE + cross entropy on the glimpses).
            weight_decay: lambda (= nu) of the weight penalty; ``l2_reduction`` "sum" is the paper's
                lambda/2 * sum(theta^2), "mean" the reference code's mean squared weight.
            location_glimpses: T of location pretraining (12 in the paper).
            location_objective: "mean" (default): location pretraining minimises Eq. 5 divided by T (per-step
                cross entropy averaged over the T steps, penalty nu / T: the same minimiser, a T times smaller
                gradient); "sum": Eq. 5 as written. See `saccade_zoo.training.losses.location_objective_scale`.
            num_glimpses: T of the policy step (default: the model's, 6 in the paper).
            num_trajectories: S sampled trajectories per image in the policy step (2 in the paper).
            reinforce_weight: weight of the REINFORCE term (1 in Eq. 6).
            sampling_seed: salt of the keyed trajectory sampling.
            **kwargs: passed to ``keras.Model.compile`` (``run_eagerly``, ``jit_compile``, ``steps_per_execution``).
                ``jit_compile`` defaults to False (Keras' "auto" would turn XLA on with a GPU, and the policy
                step's keyed sampling uses ``tf.fingerprint``, which XLA cannot compile).
        """
        kwargs.setdefault("jit_compile", False)
        if stage not in self.supported_stages:
            raise ValueError(f"{type(self).__name__} trains the stages {self.supported_stages}; got stage={stage!r}.")
        for key in ("loss", "metrics", "loss_weights", "weighted_metrics"):
            if kwargs.get(key) is not None:
                raise ValueError(f"{type(self).__name__}.compile takes no `{key}`: the stage defines its loss and metrics.")
            kwargs.pop(key, None)
        location_objective_scale(location_objective, 1)  # validates the name
        if int(num_trajectories) < 1:
            raise ValueError(f"num_trajectories must be >= 1, got {num_trajectories}.")
        super().compile(optimizer=optimizer, **kwargs)
        self.training_options = dict(
            stage=stage, weight_decay=float(weight_decay), l2_reduction=l2_reduction,
            location_glimpses=int(location_glimpses), num_glimpses=None if num_glimpses is None else int(num_glimpses),
            num_trajectories=int(num_trajectories), reinforce_weight=float(reinforce_weight),
            sampling_seed=int(sampling_seed), location_objective=location_objective,
        )
        self._stage_trackers = [keras.metrics.Mean(name=name) for name in STAGE_METRICS[stage]]
        self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        return list(getattr(self, "_stage_trackers", []))

    def get_compile_config(self):
        config = super().get_compile_config()
        if config is not None and getattr(self, "training_options", None):
            config = dict(config, saccade_zoo_training=dict(self.training_options))
        return config

    def compile_from_config(self, config):
        config = dict(config)
        options = config.pop("saccade_zoo_training", {})
        config = keras.saving.deserialize_keras_object(config)
        kwargs = {k: config[k] for k in ("optimizer", "run_eagerly", "steps_per_execution", "jit_compile") if k in config}
        self.compile(**kwargs, **options)

    def _run_stage(self, data, training):
        images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        labels = unpack_labels(labels)
        options = self.training_options
        terms = self._stage_terms(options["stage"], images, labels, training, options)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        local = tf.shape(labels)[0]
        global_batch = tf.cast(local * replicas, tf.float32)
        scale = terms.get("scale", 1.0)  # a factor on the whole objective (location pretraining: 1/T, see losses)
        scaled, unscaled, values = 0.0, 0.0, {}
        for name, per_example in terms["per_example"].items():
            per_example = tf.cast(per_example, tf.float32)  # mixed precision: terms may be float16 / bfloat16
            scaled += scale * tf.reduce_sum(per_example) / global_batch
            values[name] = scale * tf.reduce_mean(per_example)
            unscaled += values[name]
        penalty = scale * options["weight_decay"] * tf.cast(l2_penalty(terms["penalised"], options["l2_reduction"]),
                                                            tf.float32)
        values["l2"] = penalty
        scaled += penalty / replicas
        values["loss"] = unscaled + penalty
        for name, per_example in terms["stats"].items():
            values[name] = tf.reduce_mean(tf.cast(per_example, tf.float32))
        return scaled, values, tf.cast(local, tf.float32)

    def train_step(self, data):
        if not getattr(self, "training_options", None):
            raise ValueError(f"Call {type(self).__name__}.compile(optimizer, stage=...) before fit().")
        variables = self._stage_variables(self.training_options["stage"])
        with tf.GradientTape() as tape:
            loss, values, count = self._run_stage(data, training=True)
            loss = self.optimizer.scale_loss(loss)  # x the loss scale under mixed_float16; apply_gradients unscales
        gradients = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self._update_metrics(values, count)

    def test_step(self, data):
        if not getattr(self, "training_options", None):
            raise ValueError(f"Call {type(self).__name__}.compile(optimizer, stage=...) before evaluate().")
        _, values, count = self._run_stage(data, training=False)
        return self._update_metrics(values, count)

    def _update_metrics(self, values, count):
        for tracker in self._stage_trackers:
            if tracker.name in values:
                tracker.update_state(values[tracker.name], sample_weight=count)
        return {tracker.name: tracker.result() for tracker in self._stage_trackers}
