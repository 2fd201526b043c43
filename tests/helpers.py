"""Small helpers shared by the tests."""
import json
import subprocess
import sys

import numpy as np

import keras


def config_round_trip(layer):
    """from_config(get_config()) gives a layer with the same config."""
    config = layer.get_config()
    clone = type(layer).from_config(json.loads(json.dumps(config)))
    assert clone.get_config() == config
    return clone


def one_fit_step_changes_weights(layer, input_shape, batch=2):
    """Wrap a single-input layer in a model, take one SGD step, and check every trainable weight moved."""
    inputs = keras.Input(input_shape)
    out = layer(inputs)
    model = keras.Model(inputs, out)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    x = np.random.rand(batch, *input_shape).astype("float32")
    y = np.random.rand(*((batch,) + tuple(out.shape[1:]))).astype("float32")
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(x, y, epochs=1, batch_size=batch, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    moved = [not np.allclose(b, w.numpy()) for b, w in zip(before, model.trainable_weights)]
    return moved


def run_python(code, timeout=300):
    """Run code in a fresh interpreter (nothing imported yet); return stdout, fail on error."""
    env_code = "import os; os.environ['TF_ENABLE_ONEDNN_OPTS']='0'; os.environ['TF_CPP_MIN_LOG_LEVEL']='2'\n"
    proc = subprocess.run([sys.executable, "-c", env_code + code], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout
