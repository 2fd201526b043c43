"""Resumable staged training: a deterministic, skippable batch stream, step checkpoints, optimizers with a
cosine schedule and warm-up, and `train_stage`, which runs (or resumes) one of the stages a model declares, under
the divergence guard.

A stage's state is one file, ``<stage_dir>/checkpoint.keras`` (weights, optimizer state and the compile
setup, including the step counter). Batch ``g`` of a stage is a pure function of (seed, stage, g), so a run
killed anywhere resumes from its last checkpoint exactly where it stopped: the same batches, the same
sampled trajectories (keyed on the step), the same learning rates.
"""
import hashlib
import json
import os

import numpy as np

import keras
import tensorflow as tf

from saccade_zoo.data.inputs import num_examples, take_examples
from saccade_zoo.training.guard import DivergenceGuard


def epoch_order(num_examples, seed, stage_index, epoch):
    return np.random.default_rng([seed, stage_index, epoch]).permutation(num_examples)


def batch_stream(images, labels, batch_size, seed, stage_index, start_step, stop_step):
    """Batches ``start_step .. stop_step - 1`` of the stage's stream (each epoch a seeded permutation, the
    last partial batch of an epoch dropped) as a tf.data.Dataset of (images, labels). ``images`` may be a dict of
    arrays (a model with several inputs, e.g. a variational saccader with ``proxy_input=True``)."""
    count = num_examples(images)
    steps_per_epoch = count // batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size {batch_size} is larger than the {count} training examples.")

    def generate():
        order, order_epoch = None, -1
        for step in range(start_step, stop_step):
            epoch, offset = divmod(step, steps_per_epoch)
            if epoch != order_epoch:
                order, order_epoch = epoch_order(count, seed, stage_index, epoch), epoch
            index = np.sort(order[offset * batch_size:(offset + 1) * batch_size])
            yield take_examples(images, index), labels[index]

    labels = np.asarray(labels)  # (N,) integer classes or (N, C) multi-hot vectors
    spec = ({name: tf.TensorSpec((batch_size,) + value.shape[1:], tf.float32) for name, value in images.items()}
            if isinstance(images, dict) else tf.TensorSpec((batch_size,) + images.shape[1:], tf.float32),
            tf.TensorSpec((batch_size,) + labels.shape[1:], tf.as_dtype(labels.dtype)))
    return tf.data.Dataset.from_generator(generate, output_signature=spec).prefetch(2)


def save_atomically(model, path):
    tmp = path + ".tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)


class StepCheckpoint(keras.callbacks.Callback):
    """Saves the whole model (weights, optimizer, compile setup) every ``every`` steps and at each epoch end,
    atomically (a kill during a save leaves the previous checkpoint intact)."""

    def __init__(self, path, every=50):
        super().__init__()
        self.path, self.every = path, int(every)

    def on_train_batch_end(self, batch, logs=None):
        if self.every > 0 and int(self.model.optimizer.iterations) % self.every == 0:
            save_atomically(self.model, self.path)

    def on_epoch_end(self, epoch, logs=None):
        save_atomically(self.model, self.path)


class _StopAtEpochEnd(keras.callbacks.Callback):
    """Ends a fit call after one epoch (train_stage runs one fit per epoch so that each epoch's batches come
    from its own resumable stream, while Keras still shows "Epoch e/E" of the whole stage)."""

    def on_epoch_end(self, epoch, logs=None):
        self.model.stop_training = True


def make_optimizer(name="sgd", learning_rate=0.1, total_steps=1000, warmup_steps=0, momentum=0.9, clipnorm=None):
    """SGD with Nesterov momentum (the paper) or Adam, with cosine decay to 0 after a linear warm-up; ``clipnorm``
    clips the global gradient norm (off by default, as in the paper)."""
    clip = {} if not clipnorm else {"global_clipnorm": float(clipnorm)}
    decay_steps = max(int(total_steps) - int(warmup_steps), 1)
    if warmup_steps > 0:
        schedule = keras.optimizers.schedules.CosineDecay(0.0, decay_steps, warmup_target=learning_rate,
                                                          warmup_steps=int(warmup_steps))
    else:
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps)
    if name == "sgd":
        return keras.optimizers.SGD(schedule, momentum=momentum, nesterov=True, **clip)
    if name == "adam":
        return keras.optimizers.Adam(schedule, **clip)
    raise ValueError(f"optimizer must be 'sgd' (Nesterov momentum, as in the paper) or 'adam', got {name!r}.")


def train_stage(model, stage, train, out_dir, epochs, batch_size, optimizer="sgd", learning_rate=0.1,
                warmup_epochs=0.0, seed=0, checkpoint_every=50, validation=None, verbose=1, compile_options=None,
                clipnorm=None):
    """Run (or resume, or skip if finished) one training step of the paper; returns the trained model.

    Args:
        model: the model to start from (ignored when the stage's checkpoint or final model exists).
        stage: the name of one of the model's declared stages (``model.stages``).
        train: (images float32 (N, H, W, C), labels: int (N,) classes or (N, C) multi-hot vectors); for a model
            with several inputs, images is a dict of arrays (e.g. ``{"images": ..., "proxy": ...}``).
        out_dir: the run's folder; the stage writes ``<out_dir>/<stage>/`` (checkpoint.keras, final.keras,
            history.json, settings.json, guard.json) and TensorBoard logs to ``<out_dir>/tensorboard/<stage>``.
        validation: optional (images, labels) evaluated after each epoch.
        verbose: Keras progress bars (0, 1, 2); resume/skip messages are always printed.
        compile_options: extra ``compile`` arguments (weight_decay, num_trajectories, ...).
        clipnorm: optional global gradient-norm clipping.

    A checkpoint is resumed only when the stage's settings (optimizer, rate, epochs, batch, ..., and the model's
    architecture: `model_fingerprint`) are those it was written with; otherwise the stage restarts from ``model`` (so a rerun with a lower learning rate after a
    divergence takes effect). Raises `saccade_zoo.training.guard.TrainingDiverged` when the loss or the weights
    become non-finite or explode; the last good checkpoint stays, and no final model is written.
    """
    declared = type(model).stage(stage)  # a ValueError naming the model's stages otherwise
    stage_dir = os.path.join(out_dir, stage)
    os.makedirs(stage_dir, exist_ok=True)
    final_path = os.path.join(stage_dir, "final.keras")
    checkpoint_path = os.path.join(stage_dir, "checkpoint.keras")
    guard_path = os.path.join(stage_dir, "guard.json")
    settings_path = os.path.join(stage_dir, "settings.json")
    if os.path.exists(final_path):
        print(f"[{stage}] already trained: loading {final_path}")
        return keras.models.load_model(final_path)
    images, labels = train
    steps_per_epoch = num_examples(images) // batch_size
    total = steps_per_epoch * epochs
    settings = json.loads(json.dumps(dict(
        optimizer=optimizer, learning_rate=learning_rate, epochs=epochs, batch_size=batch_size,
        warmup_epochs=warmup_epochs, seed=seed, examples=num_examples(images), clipnorm=clipnorm,
        compile_options=compile_options or {}, model=model_fingerprint(model))))
    if os.path.exists(checkpoint_path):
        previous = _read_json(settings_path)
        if previous != settings:
            changed = sorted(k for k in set(settings) | set(previous) if settings.get(k) != previous.get(k))
            print(f"[{stage}] settings changed since {checkpoint_path} ({', '.join(changed)}): restarting the stage")
            for path in (checkpoint_path, guard_path, os.path.join(stage_dir, "history.json")):
                if os.path.exists(path):
                    os.replace(path, path + ".previous")
    if os.path.exists(checkpoint_path):
        model = keras.models.load_model(checkpoint_path)
        start = int(model.optimizer.iterations)
        print(f"[{stage}] resuming from {checkpoint_path} at step {start}/{total}")
    else:
        opt = make_optimizer(optimizer, learning_rate, total, int(warmup_epochs * steps_per_epoch), clipnorm=clipnorm)
        model.compile(opt, stage=stage, **(compile_options or {}))
        start = 0
        with open(settings_path, "w") as f:
            json.dump(settings, f, indent=1)
    guard = DivergenceGuard(
        stage, lambda: model._stage_variables(stage), checkpoint_path, state_path=guard_path,
        hint=f"Try a lower learning rate for this stage (it was {learning_rate:g}, e.g. {learning_rate / 3:.2g}) "
             f"or gradient clipping (clipnorm); the stage then restarts from its start.")
    callbacks = [guard,  # first: a diverged batch raises before any checkpoint of it is written
                 StepCheckpoint(checkpoint_path, checkpoint_every),
                 keras.callbacks.TensorBoard(os.path.join(out_dir, "tensorboard", stage), update_freq="epoch"),
                 _StopAtEpochEnd()]
    history = _read_json(os.path.join(stage_dir, "history.json"))
    stage_index = [s.name for s in type(model).stages].index(declared.name)
    while start < total:
        epoch, offset = divmod(start, steps_per_epoch)
        stop = (epoch + 1) * steps_per_epoch
        data = batch_stream(images, labels, batch_size, seed, stage_index, start, stop)
        result = model.fit(data, initial_epoch=epoch, epochs=epochs, steps_per_epoch=stop - start,
                           validation_data=validation, validation_batch_size=batch_size * 2,
                           callbacks=callbacks, verbose=verbose)
        for key, values in result.history.items():
            history.setdefault(key, []).extend(float(v) for v in values)
        with open(os.path.join(stage_dir, "history.json"), "w") as f:
            json.dump(history, f, indent=1)
        start = int(model.optimizer.iterations)
    save_atomically(model, final_path)
    return model


def model_fingerprint(model):
    """The model's class and a hash of its architecture (its config): a checkpoint of another architecture (another
    preset, glimpse count or width in the same output folder) is not resumed into this run."""
    config = json.dumps(model.get_config(), sort_keys=True, default=str)
    return f"{type(model).__name__}:{hashlib.sha256(config.encode()).hexdigest()[:16]}"


def _read_json(path):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {}
