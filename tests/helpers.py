"""Small helpers shared by the tests."""
import inspect
import json
import subprocess
import sys

import numpy as np

import keras
from keras import tree

PRECISION_POLICIES = ("mixed_float16", "mixed_bfloat16", "float32")


def config_round_trip(layer):
    """from_config(get_config()) gives a layer with the same config."""
    config = layer.get_config()
    clone = type(layer).from_config(json.loads(json.dumps(config)))
    assert clone.get_config() == config
    return clone


def load_tool(path, name):
    """A script of tools/ (e.g. tools/train.py) as a module whose functions tests call directly.

    The flags the script defines are removed from absl's global FLAGS again once it has loaded: two scripts that
    both define e.g. ``--output_dir`` would otherwise clash (absl's DuplicateFlagError) when one pytest worker
    loads both. So the module's ``main`` (which reads FLAGS) is not callable this way; run the script as a
    subprocess for that."""
    import importlib.util

    from absl import flags

    before = set(flags.FLAGS)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        for flag_name in set(flags.FLAGS) - before:
            if flag_name in flags.FLAGS:
                delattr(flags.FLAGS, flag_name)
    return module


def run_python(code, timeout=300):
    """Run code in a fresh interpreter (nothing imported yet); return stdout, fail on error."""
    env_code = "import os; os.environ['TF_ENABLE_ONEDNN_OPTS']='0'; os.environ['TF_CPP_MIN_LOG_LEVEL']='2'\n"
    proc = subprocess.run([sys.executable, "-c", env_code + code], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


# ------------------------------------------------------------------------------------------------ run_layer_test
def _is_float(dtype):
    return "float" in keras.backend.standardize_dtype(dtype)


def _none_batch(shapes):
    """The same shape(s) with the batch dimension unknown."""
    if isinstance(shapes, dict):
        return {k: _none_batch(v) for k, v in shapes.items()}
    return (None, *tuple(shapes)[1:])


def _shapes(outputs):
    if isinstance(outputs, dict):
        return {k: tuple(v.shape) for k, v in outputs.items()}
    return tuple(outputs.shape)


def _call(layer, inputs, call_kwargs):
    """Single-input layers take the tensor positionally, multi-input layers a dict of call-argument names."""
    if isinstance(inputs, dict):
        return layer(**inputs, **call_kwargs)
    return layer(inputs, **call_kwargs)


def _input_shapes(inputs, batch=None):
    if isinstance(inputs, dict):
        return {f"{k}_shape": (batch, *v.shape[1:]) for k, v in inputs.items()}
    return (batch, *inputs.shape[1:])


def _check_output_dtypes(layer, outputs, float32_outputs, where):
    """Float outputs in the layer's compute dtype (those named in float32_outputs: float32 under every policy)."""
    named = outputs.items() if isinstance(outputs, dict) else [(None, outputs)]
    for key, value in named:
        dtype = keras.backend.standardize_dtype(value.dtype)
        if not _is_float(dtype):
            continue
        expected = "float32" if key in float32_outputs else layer.compute_dtype
        assert dtype == expected, f"{where}: output {key!r} is {dtype}, expected {expected} ({layer.dtype_policy.name})"


def run_serialization_test(layer):
    """get_config / from_config and keras.saving serialize / deserialize give the same config and attributes
    (keras-hub's run_serialization_test)."""
    cls = type(layer)
    config = layer.get_config()
    config_json = json.dumps(config, sort_keys=True)
    revived = cls.from_config(json.loads(config_json))
    assert json.dumps(revived.get_config(), sort_keys=True) == config_json
    assert set(dir(revived)) - {"__annotations__"} == set(dir(layer)) - {"__annotations__"}
    serialized = json.dumps(keras.saving.serialize_keras_object(layer), sort_keys=True)
    revived = keras.saving.deserialize_keras_object(json.loads(serialized))
    assert type(revived) is cls
    assert json.dumps(revived.get_config(), sort_keys=True) == config_json
    assert set(dir(revived)) - {"__annotations__"} == set(dir(layer)) - {"__annotations__"}
    return revived


def run_layer_test(
    cls,
    init_kwargs,
    input_data,
    expected_output_shape,
    call_kwargs=None,
    expected_num_trainable_weights=0,
    expected_num_non_trainable_weights=0,
    expected_num_non_trainable_variables=None,
    expected_num_params=None,
    float32_outputs=(),
    fit_outputs=None,
    moved_weights="all",
    run_training_check=True,
    run_precision_checks=True,
):
    """Standard checks of a layer, in the spirit of keras-hub's ``TestCase.run_layer_test``.

    Args:
        cls, init_kwargs: the layer class and its constructor arguments.
        input_data: a NumPy array (single-input layers) or a dict of call-argument name -> array.
        expected_output_shape: the eager output shape (a tuple, or a dict for dict outputs), batch included.
        call_kwargs: extra non-tensor call arguments (e.g. ``num_glimpses``).
        expected_num_trainable_weights / _non_trainable_weights / _non_trainable_variables: counts after build
            (non-trainable variables default to the non-trainable weights' count).
        expected_num_params: exact ``count_params()``, when given.
        float32_outputs: keys of float outputs that are float32 under every dtype policy by contract; every
            other float output must be in the compute dtype.
        fit_outputs: the output keys the fit step trains on (default: every float output not in float32_outputs).
        moved_weights: after one fit step, "all" trainable weights must have moved, or "any" of them.
        run_training_check: take one fit step (skipped when the layer has no trainable weights).
        run_precision_checks: outputs / variables / sub-layers under mixed_float16, mixed_bfloat16 and float32.

    Returns:
        dict with the eager ``outputs`` of a float32 layer, the ``layer`` and, when a fit step ran, ``moved``
        (one bool per trainable weight).
    """
    call_kwargs = dict(call_kwargs or {})
    if expected_num_non_trainable_variables is None:
        expected_num_non_trainable_variables = expected_num_non_trainable_weights
    float32_outputs = tuple(float32_outputs)

    def check_counts(layer):
        assert layer.built
        assert len(layer.trainable_weights) == expected_num_trainable_weights, len(layer.trainable_weights)
        assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights, len(layer.non_trainable_weights)
        assert len(layer.non_trainable_variables) == expected_num_non_trainable_variables, (
            len(layer.non_trainable_variables))
        if expected_num_params is not None:
            assert layer.count_params() == expected_num_params, layer.count_params()

    # 1. Serialization.
    run_serialization_test(cls(**init_kwargs))

    # 2. Build from shapes with an unknown batch size (layers that create their weights in build()).
    layer = cls(**init_kwargs)
    if type(layer).build is not keras.layers.Layer.build:
        shapes = _input_shapes(input_data)
        layer.build(**shapes) if isinstance(shapes, dict) else layer.build(shapes)
        check_counts(layer)

    # 3. Symbolic call on KerasTensors: with the data's shape, and with an unknown batch size.
    layer = cls(**init_kwargs)
    symbolic = tree.map_structure(lambda x: keras.KerasTensor(x.shape, x.dtype), input_data)
    spec = _call(layer, symbolic, call_kwargs)
    check_counts(layer)
    assert _shapes(spec) == expected_output_shape, (_shapes(spec), expected_output_shape)
    _check_output_dtypes(layer, spec, float32_outputs, "symbolic call")
    unknown_batch = tree.map_structure(lambda x: keras.KerasTensor((None, *x.shape[1:]), x.dtype), input_data)
    assert _shapes(_call(cls(**init_kwargs), unknown_batch, call_kwargs)) == _none_batch(expected_output_shape)

    # 4. Eager call: shapes, and dtypes that match the symbolic output spec.
    layer = cls(**init_kwargs)
    outputs = _call(layer, input_data, call_kwargs)
    check_counts(layer)
    assert _shapes(outputs) == expected_output_shape, (_shapes(outputs), expected_output_shape)
    spec_dtypes = tree.map_structure(lambda x: keras.backend.standardize_dtype(x.dtype), spec)
    eager_dtypes = tree.map_structure(lambda x: keras.backend.standardize_dtype(x.dtype), outputs)
    assert eager_dtypes == spec_dtypes, (eager_dtypes, spec_dtypes)
    _check_output_dtypes(layer, outputs, float32_outputs, "eager call")
    for value in tree.flatten(outputs):
        if _is_float(value.dtype):
            assert np.all(np.isfinite(keras.ops.convert_to_numpy(value)))

    # 5. compute_output_shape (layers that define it), with an unknown batch size and with the data's.
    if type(layer).compute_output_shape is not keras.layers.Layer.compute_output_shape:
        accepted = inspect.signature(layer.compute_output_shape).parameters
        extra = {k: v for k, v in call_kwargs.items() if k in accepted}
        for batch in (None, _batch_size(input_data)):
            expected = expected_output_shape if batch else _none_batch(expected_output_shape)
            shapes = _input_shapes(input_data, batch)
            if isinstance(shapes, dict):
                got = layer.compute_output_shape(**shapes, **extra)
            else:
                got = layer.compute_output_shape(shapes, **extra)
            assert _as_tuples(got) == expected, (got, expected)

    result = {"outputs": outputs, "layer": layer}

    # 6. One fit step moves the trainable weights.
    if run_training_check and expected_num_trainable_weights:
        result["moved"] = _fit_step(layer, input_data, outputs, call_kwargs, fit_outputs, float32_outputs)
        check = all if moved_weights == "all" else any
        assert check(result["moved"]), [(w.path, m) for w, m in zip(layer.trainable_weights, result["moved"])]

    # 7. Precision: a layer given a dtype policy computes in its compute dtype, keeps float32 variables and
    #    passes the policy to every sub-layer.
    if run_precision_checks:
        for name in PRECISION_POLICIES:
            policy = keras.dtype_policies.get(name)
            layer = cls(**{**init_kwargs, "dtype": policy})
            outputs_p = _call(layer, input_data, call_kwargs)
            _check_output_dtypes(layer, outputs_p, float32_outputs, name)
            assert layer.compute_dtype == policy.compute_dtype and layer.variable_dtype == "float32"
            spec_p = _call(cls(**{**init_kwargs, "dtype": policy}), symbolic, call_kwargs)
            _check_output_dtypes(layer, spec_p, float32_outputs, f"{name} symbolic call")
            for value in tree.flatten(outputs_p):
                if _is_float(value.dtype):
                    assert np.all(np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(value, "float32")))), name
            for weight in layer.weights:
                if _is_float(weight.dtype):
                    assert keras.backend.standardize_dtype(weight.dtype) == policy.variable_dtype, (weight.path, name)
            for sublayer in layer._flatten_layers():
                assert sublayer.compute_dtype == policy.compute_dtype, (sublayer.name, sublayer.compute_dtype, name)
                assert sublayer.variable_dtype == policy.variable_dtype, (sublayer.name, sublayer.variable_dtype, name)
    return result


def _batch_size(inputs):
    return int(next(iter(tree.flatten(inputs))).shape[0])


def _as_tuples(shapes):
    if isinstance(shapes, dict):
        return {k: _as_tuples(v) for k, v in shapes.items()}
    return tuple(shapes)


class LayerModel(keras.Model):
    """Wraps one layer for a fit step: calls it on the inputs and returns the float outputs being trained."""

    def __init__(self, layer, call_kwargs, keys):
        super().__init__(name="layer_model")
        self.layer, self.call_kwargs, self.keys = layer, call_kwargs, keys

    def call(self, inputs):
        outputs = _call(self.layer, inputs, self.call_kwargs)
        if self.keys is None:
            return outputs
        return {k: outputs[k] for k in self.keys}


def _fit_step(layer, input_data, outputs, call_kwargs, fit_outputs, float32_outputs):
    """One SGD step through ``model.fit`` on random targets; returns which trainable weights moved."""
    keys = None
    if isinstance(outputs, dict):
        keys = list(fit_outputs) if fit_outputs is not None else [
            k for k, v in outputs.items() if _is_float(v.dtype) and k not in float32_outputs]
        targets = {k: np.random.rand(*outputs[k].shape).astype("float32") for k in keys}
    else:
        targets = np.random.rand(*outputs.shape).astype("float32")
    model = LayerModel(layer, call_kwargs, keys)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    before = [w.numpy().copy() for w in layer.trainable_weights]
    batch = _batch_size(input_data)
    history = model.fit(input_data, targets, epochs=1, batch_size=batch, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    return [not np.array_equal(b, w.numpy()) for b, w in zip(before, layer.trainable_weights)]
