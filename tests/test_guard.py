"""The divergence guard: non-finite or exploding losses and weights stop a stage loudly, before a checkpoint of
the bad state is written; tools/train.py then exits non-zero without a model, and a rerun with a lower learning
rate restarts the stage."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import keras
from saccade_zoo.training.guard import DivergenceGuard, TrainingDiverged, kernel_norm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.1), loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def guard_for(model, tmp_path, **kwargs):
    guard = DivergenceGuard("location", lambda: model.trainable_variables, str(tmp_path / "checkpoint.keras"),
                            hint="Try a lower learning rate.", state_path=str(tmp_path / "guard.json"), **kwargs)
    guard.set_model(model)
    guard.on_train_begin()
    return guard


def test_non_finite_loss_stops_with_stage_step_and_hint(tmp_path):
    model = tiny_model()
    guard = guard_for(model, tmp_path)
    guard.on_train_batch_end(0, {"loss": 2.0})
    with pytest.raises(TrainingDiverged, match=r"stage 'location' at step 0: loss is nan.*Try a lower learning rate"):
        guard.on_train_batch_end(1, {"loss": float("nan")})
    with pytest.raises(TrainingDiverged, match="location_ce is inf"):
        guard.on_train_batch_end(1, {"loss": 2.0, "location_ce": float("inf")})


def test_exploding_loss_stops_relative_to_the_stage_start(tmp_path):
    model = tiny_model()
    guard = guard_for(model, tmp_path, reference_batches=3)
    for loss in (5.0, 4.0, 3.0):  # the reference is the largest of the first 3: 5
        guard.on_train_batch_end(0, {"loss": loss})
    guard.on_train_batch_end(0, {"loss": 49.0})  # under 10 x 5
    with pytest.raises(TrainingDiverged, match=r"loss 51 is over 10x its value at the start of the stage \(5\)"):
        guard.on_train_batch_end(0, {"loss": 51.0})
    # The reference survives a restart of the process (a resumed stage keeps its bounds).
    assert json.load(open(tmp_path / "guard.json"))["loss"] == 5.0
    resumed = guard_for(model, tmp_path, reference_batches=3)
    with pytest.raises(TrainingDiverged):
        resumed.on_train_batch_end(0, {"loss": 51.0})
    # Validation is held to the same bound at epoch end.
    with pytest.raises(TrainingDiverged, match="val_loss"):
        resumed.on_epoch_end(0, {"loss": 4.0, "val_loss": 80.0})


def test_small_losses_use_a_floor_of_one(tmp_path):
    guard = guard_for(tiny_model(), tmp_path, reference_batches=1)
    guard.on_train_batch_end(0, {"loss": 0.01})
    guard.on_train_batch_end(0, {"loss": 9.0})  # noisy REINFORCE-style terms near 0 are not "10x"
    with pytest.raises(TrainingDiverged):
        guard.on_train_batch_end(0, {"loss": 11.0})


def test_exploding_or_non_finite_weights_stop(tmp_path):
    model = tiny_model()
    guard = guard_for(model, tmp_path, weight_check_every=1)
    start = kernel_norm(model.trainable_variables)
    assert start > 0 and math.isclose(json.load(open(tmp_path / "guard.json"))["weights"], start)
    kernel = model.layers[0].kernel
    kernel.assign(kernel.numpy() * 5)
    guard.on_epoch_end(0, {"loss": 1.0})  # grown, but within 10x
    kernel.assign(kernel.numpy() * 100)
    with pytest.raises(TrainingDiverged, match="weights' norm"):
        guard.on_epoch_end(0, {"loss": 1.0})
    kernel.assign(np.full(kernel.shape, np.nan, "float32"))
    with pytest.raises(TrainingDiverged, match="no longer finite"):
        guard.on_epoch_end(0, {"loss": 1.0})


def run_train(out_dir, *flags):
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [sys.executable, os.path.join(ROOT, "tools", "train.py"), f"--output_dir={out_dir}", "--train_examples=64",
           "--test_examples=32", "--batch_size=16", "--steps=representation,location", "--epochs=1,2",
           "--checkpoint_every=1", "--eval_glimpses=2", "--eval_policies=random", "--verbose=0", "--seed=1", *flags]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_train_tool_stops_a_diverging_stage_and_restarts_it_at_a_lower_rate(tmp_path):
    out = str(tmp_path / "run")
    bad = run_train(out, "--learning_rate=0.1,1e6")
    assert bad.returncode == 3, bad.stdout[-2000:] + bad.stderr[-2000:]
    assert "Training diverged in stage 'location'" in bad.stderr
    assert "To retry: the same command with --learning_rate=0.1,333333" in bad.stderr
    assert os.path.exists(os.path.join(out, "representation", "final.keras"))
    assert not os.path.exists(os.path.join(out, "location", "final.keras"))
    assert not os.path.exists(os.path.join(out, "model.keras"))
    # Whatever checkpoint the location stage kept is one the guard had passed: finite weights.
    checkpoint = os.path.join(out, "location", "checkpoint.keras")
    if os.path.exists(checkpoint):
        kept = keras.models.load_model(checkpoint)
        assert all(np.isfinite(w).all() for w in kept.get_weights())

    good = run_train(out, "--learning_rate=0.1,0.1")
    assert good.returncode == 0, good.stdout[-2000:] + good.stderr[-2000:]
    assert "[representation] already trained" in good.stdout
    if os.path.exists(checkpoint + ".previous"):
        assert "settings changed since" in good.stdout and "restarting the stage" in good.stdout
    assert os.path.exists(os.path.join(out, "model.keras"))
