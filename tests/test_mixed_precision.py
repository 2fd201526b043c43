"""Mixed precision: a tiny Saccader trains every stage under mixed_bfloat16 and mixed_float16 (the dtype passed to the
models, or a global Keras policy), keeps float32 variables and float32 class scores, and reloads with its policies;
under float32 nothing changes."""
import numpy as np
import pytest

import keras
from saccade_zoo import BagNet, Saccader

TINY_BAGNET = dict(image_shape=(100, 100, 1), num_classes=10, blocks=(1, 1, 1, 1), planes=(16, 16, 16, 16),
                   kernel3=(1, 1, 1, 1), stem_filters=16, lowd_dim=16)
TINY_SACCADER = dict(num_glimpses=3, attention_filters=(16, 16), mixing_dim=16)
STAGES = tuple(stage.name for stage in Saccader.stages)
STAGE_OPTIONS = {"location": {"location_glimpses": 6}}
OUTPUT_DTYPES = {"logits": "float32", "step_logits": "float32", "locations": "int32", "boxes": "float32"}


def tiny_saccader(dtype=None, seed=0):
    keras.utils.set_random_seed(seed)
    return Saccader(BagNet(**TINY_BAGNET, dtype=dtype), **TINY_SACCADER, dtype=dtype)


@pytest.fixture
def global_policy():
    """Set a global dtype policy for one test; always back to float32 afterwards."""
    try:
        yield keras.config.set_dtype_policy
    finally:
        keras.config.set_dtype_policy("float32")


def batch(n=4, seed=0):
    rng = np.random.RandomState(seed)
    return rng.randn(n, 100, 100, 1).astype("float32"), (np.arange(n) % 10).astype("int32")


def standardized(x):
    return keras.backend.standardize_dtype(x.dtype)


def check_policies(model, compute_dtype):
    """Compute layers in the compute dtype, the float32 heads in float32, every variable float32."""
    heads = {"spatial_mean", "saccader_cell", "glimpse_readout"}
    for layer in model._flatten_layers():
        if layer is model or isinstance(layer, keras.layers.InputLayer):
            continue
        expected = "float32" if layer.name in heads else compute_dtype
        assert layer.compute_dtype == expected, (layer.name, layer.compute_dtype)
        assert layer.variable_dtype == "float32", (layer.name, layer.variable_dtype)
    for variable in model.variables:
        if "float" in standardized(variable):
            assert standardized(variable) == "float32", variable.path


@pytest.mark.parametrize("how", ["dtype", "global"])
@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_every_stage_fits_under_mixed_precision(policy, how, global_policy):
    if how == "global":
        global_policy(policy)
        model = tiny_saccader()
    else:
        model = tiny_saccader(dtype=policy)
    compute_dtype = keras.dtype_policies.get(policy).compute_dtype
    check_policies(model, compute_dtype)
    images, labels = batch()
    out = model(images)
    assert {k: standardized(v) for k, v in out.items()} == OUTPUT_DTYPES
    forward = model.forward(images)
    assert standardized(forward["mixed"]) == standardized(forward["logits_map"]) == compute_dtype
    assert standardized(forward["location_logits"]) == "float32"

    for stage in STAGES:
        optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
        if policy == "mixed_float16" and how == "dtype":
            # Keras wraps the optimizer itself only when the *model's* policy is mixed_float16 (the global policy
            # here); see test_compile_wraps_the_optimizer_under_a_global_mixed_float16_policy.
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        model.compile(optimizer, stage=stage, **STAGE_OPTIONS.get(stage, {}))
        if policy == "mixed_float16":
            assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        before = [w.numpy().copy() for w in model.trainable_weights]
        history = model.fit(images, labels, batch_size=4, epochs=1, verbose=0).history
        assert all(np.isfinite(v[-1]) for v in history.values()), (stage, history)
        assert all(np.all(np.isfinite(w.numpy())) for w in model.weights), stage
        moved = any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))
        if isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer):
            # A float16 step whose scaled gradients overflow is skipped and the loss scale halves instead.
            assert moved or float(model.optimizer.dynamic_scale) < model.optimizer.initial_scale, stage
        else:
            assert moved, stage
    check_policies(model, compute_dtype)
    assert np.all(np.isfinite(model(images)["logits"].numpy()))


def test_compile_wraps_the_optimizer_under_a_global_mixed_float16_policy(global_policy):
    """Under a global mixed_float16 policy compile wraps the optimizer in a LossScaleOptimizer, and the staged
    train_step scales the loss before differentiating (apply_gradients divides by the scale): one SGD step from the
    same weights moves them as float32 SGD does, up to float16 rounding. Without the scaling the update would be
    2**15 times too small."""
    images, labels = batch()
    reference = tiny_saccader()
    weights = reference.get_weights()
    global_policy("mixed_float16")
    mixed = tiny_saccader()
    mixed.set_weights(weights)
    for stage in STAGES:
        deltas = []
        for model in (reference, mixed):
            model.set_weights(weights)
            model.compile(keras.optimizers.SGD(0.1), stage=stage, **STAGE_OPTIONS.get(stage, {}))
            before = [w.numpy().copy() for w in model.trainable_weights]
            model.fit(images, labels, batch_size=4, epochs=1, verbose=0)
            deltas.append(np.concatenate([(w.numpy() - b).ravel() for b, w in zip(before, model.trainable_weights)]))
        assert isinstance(mixed.optimizer, keras.optimizers.LossScaleOptimizer)
        assert not isinstance(reference.optimizer, keras.optimizers.LossScaleOptimizer)
        error = np.linalg.norm(deltas[1] - deltas[0]) / np.linalg.norm(deltas[0])
        assert error < 0.2, (stage, error)


def test_mixed_model_computes_the_float32_function(tmp_path):
    """Same weights: the bfloat16 BagNet's logits track the float32 ones; a saved mixed model reloads with its
    policies and gives the same outputs."""
    images, labels = batch(seed=1)
    reference = tiny_saccader()
    mixed = tiny_saccader(dtype="mixed_bfloat16")
    mixed.set_weights(reference.get_weights())
    want = reference.forward(images)["bagnet_logits"].numpy()
    got = mixed.forward(images)["bagnet_logits"].numpy()
    assert np.abs(got - want).max() <= 0.05 * np.abs(want).max() + 1e-3, np.abs(got - want).max()

    path = str(tmp_path / "mixed.keras")
    mixed.save(path)
    loaded = keras.models.load_model(path)
    check_policies(loaded, "bfloat16")
    before, after = mixed(images), loaded(images)
    for key in OUTPUT_DTYPES:
        np.testing.assert_array_equal(before[key], after[key])


def test_float32_outputs_are_bit_identical(global_policy):
    """float32 is the default and unchanged: no policy argument, dtype="float32", and a model built after a mixed
    global policy was reset all compute the same bits, with float32 layers throughout."""
    images, _ = batch(seed=2)
    default = tiny_saccader()
    check_policies(default, "float32")
    outputs = default(images)
    assert {k: standardized(v) for k, v in outputs.items()} == OUTPUT_DTYPES
    global_policy("mixed_bfloat16")
    tiny_saccader()
    global_policy("float32")
    for model in (tiny_saccader(dtype="float32"), tiny_saccader()):
        again = model(images)
        for key in OUTPUT_DTYPES:
            assert standardized(again[key]) == standardized(outputs[key])
            np.testing.assert_array_equal(again[key], outputs[key])
        forward, reference = model.forward(images), default.forward(images)
        for key in ("location_logits", "logits_map", "mixed"):
            np.testing.assert_array_equal(forward[key], reference[key])


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_engineered_policy_classifier_under_mixed_precision(policy):
    images, _ = batch(seed=3)
    reference = tiny_saccader().with_policy("sobel_var")
    mixed = tiny_saccader(dtype=policy).with_policy("sobel_var")
    assert mixed.policy_layer.compute_dtype == keras.dtype_policies.get(policy).compute_dtype
    assert mixed.readout.compute_dtype == "float32"
    want, got = reference(images), mixed(images)
    assert {k: standardized(v) for k, v in got.items()} == OUTPUT_DTYPES
    # Sobel statistics come from the float32 images (the policy layer does not autocast): the same cells.
    np.testing.assert_array_equal(got["locations"], want["locations"])
    np.testing.assert_array_equal(got["boxes"], want["boxes"])
