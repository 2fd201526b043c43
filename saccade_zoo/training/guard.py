"""Divergence guard: a training stage whose loss or weights become non-finite or explode stops loudly.

A green run must never hide a diverged model (location pretraining at too high a rate once blew the location
weights up 370x, and the run still wrote a chance-level ``model.keras``). `DivergenceGuard` watches every batch
of a stage and raises `TrainingDiverged`, naming the stage, the step, what exploded and what to try, before any
checkpoint of the bad state is written (it must come before the checkpoint callback in the callback list).
"""
import json
import math
import os

import numpy as np

import keras


class TrainingDiverged(RuntimeError):
    """A training stage's loss or weights became non-finite or exploded."""


def kernel_norm(variables):
    """Global L2 norm of the kernels among ``variables`` (rank >= 2: what the weight penalty sees)."""
    total = 0.0
    for v in variables:
        if len(v.shape) >= 2:
            total += float(np.sum(np.square(np.asarray(keras.ops.convert_to_numpy(v.value), dtype=np.float64))))
    return math.sqrt(total)


class DivergenceGuard(keras.callbacks.Callback):
    """Stops training when the stage loss or its weights blow up.

    Checks, after every training batch: the running loss (and every other logged value) is finite, and the loss
    is at most ``loss_factor`` x its reference (the largest running loss over the stage's first
    ``reference_batches`` batches, floored at 1). Every ``weight_check_every`` batches and at epoch ends: the
    kernels' global norm is finite and at most ``weight_factor`` x its value at the stage's start. At epoch
    ends, the validation loss obeys the same bound as the training loss.

    The reference values are part of the guard's ``state`` so that a resumed stage keeps its original bounds
    (``train_stage`` stores them beside the checkpoint).

    Args:
        stage: the stage's name, for messages.
        variables: callable returning the stage's trained variables (read lazily: the model may be reloaded).
        checkpoint_path: where the last good checkpoint is, for the message.
        hint: what to try, appended to the message (e.g. "rerun with --learning_rate=0.05").
        state_path: JSON file holding the reference values; read when it exists (a resumed stage keeps the
            bounds of its start), written when they are set.
    """

    def __init__(self, stage, variables, checkpoint_path=None, hint="", state_path=None, loss_factor=10.0,
                 weight_factor=10.0, reference_batches=10, weight_check_every=10):
        super().__init__()
        self.stage, self.variables, self.checkpoint_path, self.hint = stage, variables, checkpoint_path, hint
        self.state_path = state_path
        self.state = {}
        if state_path and os.path.exists(state_path):
            with open(state_path) as f:
                self.state = json.load(f)
        self.loss_factor, self.weight_factor = float(loss_factor), float(weight_factor)
        self.reference_batches, self.weight_check_every = int(reference_batches), int(weight_check_every)
        self._seen = 0

    # ----------------------------------------------------------------------------------------------- checks
    def _set_state(self, **values):
        self.state.update(values)
        if self.state_path:
            tmp = self.state_path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.state, f)
            os.replace(tmp, self.state_path)

    def _step(self):
        return int(self.model.optimizer.iterations)

    def _fail(self, what):
        message = f"Training diverged in stage '{self.stage}' at step {self._step()}: {what}. Stopped; no model was " \
                  "written for this stage."
        if self.checkpoint_path and os.path.exists(self.checkpoint_path):
            message += f" The last good checkpoint is kept: {self.checkpoint_path}."
        raise TrainingDiverged(f"{message} {self.hint}".strip())

    def _check_logs(self, logs, prefix=""):
        for name, value in (logs or {}).items():
            if name.startswith(prefix) and not math.isfinite(float(value)):
                self._fail(f"{name} is {float(value)}")
        loss = (logs or {}).get(prefix + "loss")
        if loss is None:
            return
        loss = float(loss)
        reference = self.state.get("loss")
        if reference is not None and loss > self.loss_factor * max(abs(reference), 1.0):
            self._fail(f"{prefix}loss {loss:.4g} is over {self.loss_factor:g}x its value at the start of the stage "
                       f"({reference:.4g})")

    def _check_weights(self):
        norm = kernel_norm(self.variables())
        if not math.isfinite(norm):
            self._fail("the weights are no longer finite")
        if "weights" not in self.state:
            self._set_state(weights=norm)
        start = self.state["weights"]
        if norm > self.weight_factor * max(start, 1e-12):
            self._fail(f"the weights' norm {norm:.4g} is over {self.weight_factor:g}x its value at the start of the "
                       f"stage ({start:.4g})")

    # -------------------------------------------------------------------------------------------- callbacks
    def on_train_begin(self, logs=None):
        if "weights" not in self.state:
            self._check_weights()

    def on_train_batch_end(self, batch, logs=None):
        self._check_logs(logs)
        self._seen += 1
        if logs and "loss" in logs and not self.state.get("loss_final"):
            self._set_state(loss=max(self.state.get("loss", -math.inf), float(logs["loss"])),
                            loss_final=self._seen >= self.reference_batches)
        if self.weight_check_every > 0 and self._step() % self.weight_check_every == 0:
            self._check_weights()

    def on_epoch_end(self, epoch, logs=None):
        self._check_logs(logs)
        self._check_logs(logs, prefix="val_")
        self._check_weights()
