"""Staged training through ``model.fit``: ``model.compile(optimizer, stage=...)`` picks one of the training
stages the model declares (the Saccader paper's three steps, section 3.2, for a Saccader); ``train_step`` /
``test_step`` implement it.

Each model class declares its stages (``stages``: a tuple of `Stage`, in training order): a name, what it does,
the metrics it reports and its options with their defaults. ``compile`` accepts exactly those options (plus the
weight penalty's, common to all) and Keras' own compile arguments, and refuses anything else by name;
``tools/train.py`` reads the same declarations to run every stage a model has.

Under a ``tf.distribute`` strategy every term is scaled for the global batch: per-example terms are summed
over the local batch and divided by the global batch size, the weight penalty is divided by the number of
replicas (gradients are summed over replicas), and the REINFORCE baseline is the mean reward of the *global*
batch (an all-reduce). With synchronized BatchNorm and keyed sampling, N replicas give the weights of 1 device.
"""
import dataclasses

import warnings

import keras
import tensorflow as tf

from saccade_zoo.training.losses import l2_penalty

# Options every stage takes: lambda of the weight penalty and its form (see `l2_penalty`).
COMMON_OPTIONS = {"weight_decay": 1e-4, "l2_reduction": "sum"}
# Keras' own compile arguments, passed through.
_KERAS_COMPILE = ("run_eagerly", "steps_per_execution", "jit_compile", "auto_scale_loss")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One training stage a model declares.

    Attributes:
        name: what ``compile(stage=...)`` and ``tools/train.py --steps`` call it.
        description: one line for help texts and logs.
        metrics: names reported by fit (loss first).
        options: option name -> default (besides `COMMON_OPTIONS`).
        epochs, learning_rate: the quick-start defaults of ``tools/train.py`` for this stage.
        optimizer, clipnorm: the stage's default optimizer ("sgd": Nesterov momentum, the Saccader paper; "adam":
            the variational saccading paper) and global gradient-norm clipping (None: off), for ``tools/train.py``.
    """

    name: str
    description: str
    metrics: tuple
    options: dict = dataclasses.field(default_factory=dict)
    epochs: int = 1
    learning_rate: float = 0.1
    optimizer: str = "sgd"
    clipnorm: float = None

    def all_options(self):
        return {**COMMON_OPTIONS, **self.options}


def global_mean(values):
    """Mean of ``values`` over the global batch (all replicas)."""
    total, count = tf.reduce_sum(values), tf.cast(tf.size(values), values.dtype)
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
        total, count = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [total, count])
    return total / count


def unpack_labels(y, contract):
    """Labels as the model's contract wants them: int32 (B,) class indices for a "softmax" model, float32 (B, C)
    multi-hot vectors for a "sigmoid" (multi-label) one; anything else is a ValueError naming the mismatch."""
    if y is None:
        raise ValueError("Training a saccade_zoo classifier needs labels: fit(x, y) or a dataset of (images, labels).")
    y = tf.convert_to_tensor(y)
    if contract.multi_label:
        if y.shape.rank != 2 or (y.shape[-1] is not None and y.shape[-1] != contract.num_classes):
            raise ValueError(
                f"This multi-label model takes multi-hot labels of shape (batch, {contract.num_classes}), got "
                f"{y.dtype.name} {tuple(y.shape)}. (Integer class labels need a model with activation='softmax'.)")
        return tf.cast(y, tf.float32)
    if y.shape.rank == 2 and y.shape[-1] == 1:
        y = y[:, 0]
    if y.shape.rank != 1 or y.dtype.is_floating:
        raise ValueError(
            f"Labels must be integer class indices of shape (batch,), got {y.dtype.name} {tuple(y.shape)}. "
            "(Multi-hot targets such as two-item identification need a multi-label model: build it with "
            "activation='sigmoid'.)"
        )
    return tf.cast(y, tf.int32)


class StagedTrainingMixin:
    """Adds ``compile(stage=...)`` and staged ``train_step`` / ``test_step`` to a zoo model.

    A model provides ``stages`` (a tuple of `Stage`), ``_stage_variables(stage)`` and
    ``_stage_terms(stage, images, labels, training, options)``, which returns a dict with
    ``per_example`` (name -> (B,) loss terms, summed into the loss), ``penalised`` (the variables of the
    weight penalty), ``stats`` (name -> (B,) values averaged into metrics) and optionally ``scale`` (a factor on
    the whole objective). ``_check_stage_options(stage, options)`` may refuse bad option values.
    """

    stages = ()

    @classmethod
    def stage(cls, name):
        """The declared `Stage` called ``name``; a ValueError listing the stages otherwise."""
        for stage in cls.stages:
            if stage.name == name:
                return stage
        names = ", ".join(s.name for s in cls.stages) or "none: it is evaluated, not trained"
        raise ValueError(f"{cls.__name__} has no training stage {name!r}; its stages: {names}.")

    @property
    def stage_names(self):
        return tuple(s.name for s in self.stages)

    def compile(self, optimizer="sgd", stage=None, **kwargs):
        """Configure one of the model's training stages.

        Args:
            optimizer: any Keras optimizer (the Saccader paper: SGD with Nesterov momentum 0.9).
            stage: the name of one of ``self.stages`` (default: the first).
            **kwargs: the stage's options (see ``type(model).stage(name).all_options()``: ``weight_decay`` and
                ``l2_reduction`` for every stage, plus the stage's own, e.g. ``location_glimpses``), and Keras'
                compile arguments ``run_eagerly``, ``steps_per_execution``, ``jit_compile``. ``jit_compile``
                defaults to False (Keras' "auto" would turn XLA on with a GPU, and the policy step's keyed sampling
                uses ``tf.fingerprint``, which XLA cannot compile). The stage defines the loss and metrics, so
                ``loss``/``metrics`` are refused.
        """
        if not self.stages:
            raise ValueError(f"{type(self).__name__} has no training stages: it is evaluated, not trained.")
        declared = self.stage(stage or self.stages[0].name)
        for key in ("loss", "metrics", "loss_weights", "weighted_metrics"):
            if kwargs.get(key) is not None:
                raise ValueError(f"{type(self).__name__}.compile takes no `{key}`: the stage defines its loss and metrics.")
            kwargs.pop(key, None)
        keras_kwargs = {k: kwargs.pop(k) for k in _KERAS_COMPILE if k in kwargs}
        keras_kwargs.setdefault("jit_compile", False)
        defaults = declared.all_options()
        unknown = sorted(set(kwargs) - set(defaults))
        if unknown:
            raise TypeError(f"Stage {declared.name!r} of {type(self).__name__} has no option(s) {', '.join(unknown)}; "
                            f"its options: {', '.join(sorted(defaults))}.")
        options = {**defaults, **kwargs}
        if options["l2_reduction"] not in ("sum", "mean"):
            raise ValueError(f"l2_reduction must be 'sum' (paper) or 'mean' (reference code), got "
                             f"{options['l2_reduction']!r}.")
        options["weight_decay"] = float(options["weight_decay"])
        options = self._check_stage_options(declared.name, options)
        super().compile(optimizer=optimizer, **keras_kwargs)
        self.training_options = dict(stage=declared.name, **options)
        self._stage_trackers = [keras.metrics.Mean(name=name) for name in self._stage_metric_names(declared)]
        self.optimizer.build(self.trainable_variables)

    def _check_stage_options(self, stage, options):
        """Validate (and normalise) a stage's options; returns them."""
        return options

    def fit(self, *args, **kwargs):
        """Keras ``fit``, warning first when the optimizer's learning rate is 0 at its current step: a model saved at
        the end of a decayed schedule (tools/train.py's cosine decay ends at 0) and loaded with its compile state
        would not move under Adam. Recompile it (``model.compile(optimizer, stage=...)``) to fine-tune."""
        optimizer = getattr(self, "optimizer", None)
        if optimizer is not None and getattr(optimizer, "built", False):
            try:
                rate = float(optimizer.learning_rate)  # a schedule's value at optimizer.iterations
            except (TypeError, ValueError):
                rate = None
            if rate == 0.0 and int(optimizer.iterations) > 0:  # (a warm-up starts at 0: step 0 is fine)
                warnings.warn(
                    f"{type(self).__name__} '{self.name}': fit starts with a learning rate of 0 (the optimizer is at "
                    f"step {int(optimizer.iterations)} of a spent schedule), so its weights will not change. Compile "
                    "it again with a fresh optimizer to fine-tune, e.g. model.compile(keras.optimizers.Adam(1e-4), "
                    f"stage={self.training_options.get('stage')!r}).", stacklevel=2)
        return super().fit(*args, **kwargs)

    def _stage_metric_names(self, stage):
        """The metrics fit reports for a declared `Stage` (a model may drop some, e.g. per-label accuracy of a
        one-class model)."""
        return stage.metrics

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
        options = dict(config.pop("saccade_zoo_training", {}))
        config = keras.saving.deserialize_keras_object(config)
        kwargs = {k: config[k] for k in ("optimizer", "run_eagerly", "steps_per_execution", "jit_compile") if k in config}
        stage = options.pop("stage", None)
        if stage is not None:  # files of older versions saved every stage's options: keep the stage's own
            known = self.stage(stage).all_options()
            options = {k: v for k, v in options.items() if k in known}
        self.compile(**kwargs, stage=stage, **options)

    def _run_stage(self, data, training):
        images, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        labels = unpack_labels(labels, self.contract)
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
