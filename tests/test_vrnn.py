"""Variational saccading's VRNN (Ramapuram et al., Eq. 5, appendix 7.6): its loss terms against independent NumPy
formulas and a Monte-Carlo estimate, and the `ProxyEncoder` / `VRNNCell` layers (run_layer_test, reparameterisation,
what depends on what, gradients, a T-step Functional unroll, saving)."""
import math

import numpy as np
import pytest
import tensorflow as tf

import keras
from keras import ops
from saccade_zoo.models.variational.losses import gaussian_kl, gaussian_nll
from saccade_zoo.models.variational.vrnn import ProxyEncoder, VRNNCell
from tests.helpers import config_round_trip, run_layer_test

SMALL_CELL = dict(proxy_shape=(16, 16, 2), latent_dim=3, units=16, num_layers=2, feature_dim=12,
                  decoder_filters=(8, 4), groups=4)
SMALL_ENCODER = dict(filters=(8, 16), feature_dim=12, groups=4)
OUTPUT_KEYS = ("z", "mu_q", "logvar_q", "mu_p", "logvar_p", "reconstruction", "h_prev", "h")


# ---------------------------------------------------------------------------------------------------- losses
def numpy_kl(mu_q, logvar_q, mu_p, logvar_p):
    """KL of diagonal Gaussians from variances, written independently of the implementation."""
    var_q, var_p = np.exp(logvar_q), np.exp(logvar_p)
    return 0.5 * np.sum(np.log(var_p / var_q) + (var_q + (mu_q - mu_p) ** 2) / var_p - 1.0, axis=-1)


def random_gaussians(rng, shape):
    return (rng.normal(size=shape), rng.uniform(-2, 2, size=shape), rng.normal(size=shape),
            rng.uniform(-2, 2, size=shape))


def test_gaussian_kl_matches_the_closed_form():
    rng = np.random.default_rng(0)
    params = random_gaussians(rng, (5, 7, 3))
    kl = gaussian_kl(*[p.astype("float32") for p in params]).numpy()
    assert kl.shape == (5, 7) and kl.dtype == np.float32
    np.testing.assert_allclose(kl, numpy_kl(*params), rtol=1e-5, atol=1e-6)
    # A standard-normal prior given as scalars broadcasts.
    mu, logvar = params[0].astype("float32"), params[1].astype("float32")
    np.testing.assert_allclose(gaussian_kl(mu, logvar, 0.0, 0.0).numpy(),
                               numpy_kl(params[0], params[1], 0.0, 0.0), rtol=1e-5, atol=1e-6)


def test_gaussian_kl_matches_a_monte_carlo_estimate():
    # KL(q || p) = E_q[log q(z) - log p(z)], estimated from 200k draws of z ~ q for 4 pairs of Gaussians.
    rng = np.random.default_rng(1)
    mu_q, logvar_q, mu_p, logvar_p = random_gaussians(rng, (4, 3))
    n = 200_000
    z = mu_q + np.exp(0.5 * logvar_q) * rng.normal(size=(n, 4, 3))

    def log_density(z, mu, logvar):
        return np.sum(-0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 / np.exp(logvar)), axis=-1)

    ratio = log_density(z, mu_q, logvar_q) - log_density(z, mu_p, logvar_p)  # (n, 4)
    estimate, standard_error = ratio.mean(axis=0), ratio.std(axis=0) / math.sqrt(n)
    kl = gaussian_kl(mu_q, logvar_q, mu_p, logvar_p).numpy()
    assert np.all(np.abs(kl - estimate) < 5 * standard_error + 1e-6), (kl, estimate, standard_error)
    assert np.all(standard_error < 0.05 * np.maximum(kl, 1.0))  # the check is tight enough to mean something


def test_gaussian_kl_is_zero_iff_q_equals_p():
    rng = np.random.default_rng(2)
    mu, logvar = rng.normal(size=(6, 3)).astype("float32"), rng.uniform(-3, 3, size=(6, 3)).astype("float32")
    np.testing.assert_allclose(gaussian_kl(mu, logvar, mu, logvar).numpy(), 0.0, atol=1e-6)
    moved_mean = gaussian_kl(mu, logvar, mu + 0.3, logvar).numpy()
    moved_variance = gaussian_kl(mu, logvar, mu, logvar - 0.5).numpy()
    assert np.all(moved_mean > 1e-4) and np.all(moved_variance > 1e-4)


def test_gaussian_kl_takes_log_variances_not_standard_deviations():
    # The authors' code passed the posterior's log-variance where a standard deviation was expected. With
    # log-variances (1, 2, -1) (variances 2.72, 7.39, 0.37) that reading means variances (1, 4, 1) instead: a KL of
    # 0.91 nats where the right one is 2.84. An implementation making that mistake fails here.
    mu_q, logvar_q = np.array([[0.2, -0.1, 0.4]]), np.array([[1.0, 2.0, -1.0]])
    mu_p, logvar_p = np.zeros((1, 3)), np.zeros((1, 3))
    kl = gaussian_kl(mu_q, logvar_q, mu_p, logvar_p).numpy()
    right = numpy_kl(mu_q, logvar_q, mu_p, logvar_p)
    as_std = numpy_kl(mu_q, np.log(logvar_q ** 2), mu_p, logvar_p)  # variance = (the log-variance)^2
    np.testing.assert_allclose(kl, right, rtol=1e-6)
    np.testing.assert_allclose(right, 2.8426, atol=1e-4)
    assert np.all(np.abs(kl - as_std) > 1.5), (kl, as_std)


def test_gaussian_kl_in_float32_from_float16_inputs():
    mu = np.full((2, 3), 0.5, "float16")
    out = gaussian_kl(mu, np.zeros((2, 3), "float16"), np.zeros((2, 3), "float16"), np.zeros((2, 3), "float16"))
    assert out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy(), 3 * 0.5 * 0.25, rtol=1e-6)


def test_gaussian_nll_matches_numpy():
    rng = np.random.default_rng(3)
    x, mean = rng.normal(size=(4, 8, 8, 2)), rng.normal(size=(4, 8, 8, 2))
    logvar = rng.uniform(-2, 2, size=(4, 8, 8, 2))
    expected = np.sum(0.5 * np.log(2 * np.pi * np.exp(logvar)) + (x - mean) ** 2 / (2 * np.exp(logvar)), axis=(1, 2, 3))
    nll = gaussian_nll(x.astype("float32"), mean.astype("float32"), logvar.astype("float32")).numpy()
    assert nll.shape == (4,)
    np.testing.assert_allclose(nll, expected, rtol=1e-5)
    # The default unit variance, and the 0.5 log(2 pi) constant per element (the density at the mean).
    unit = np.sum(0.5 * np.log(2 * np.pi) + 0.5 * (x - mean) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(gaussian_nll(x, mean).numpy(), unit, rtol=1e-5)
    np.testing.assert_allclose(gaussian_nll(x, x).numpy(), 0.5 * np.log(2 * np.pi) * 128, rtol=1e-6)
    # A scalar log-variance broadcasts; rank-2 inputs sum over their one non-batch axis.
    np.testing.assert_allclose(gaussian_nll(x[:, 0, 0], mean[:, 0, 0], -1.0).numpy(),
                               np.sum(0.5 * np.log(2 * np.pi * np.exp(-1.0)) + (x[:, 0, 0] - mean[:, 0, 0]) ** 2
                                      / (2 * np.exp(-1.0)), axis=1), rtol=1e-5)


# ---------------------------------------------------------------------------------------------- ProxyEncoder
def test_proxy_encoder_layer():
    # conv 3x3 3->8, 8->16 (no bias), GroupNorm 8 + 16 channels, 16x16 -> 4x4x16 -> Dense(12) + BatchNorm.
    run_layer_test(
        ProxyEncoder,
        SMALL_ENCODER,
        np.random.rand(2, 16, 16, 3).astype("float32"),
        expected_output_shape=(2, 12),
        expected_num_trainable_weights=2 + 4 + 1 + 2,
        expected_num_non_trainable_weights=2,
        expected_num_params=9 * 3 * 8 + 9 * 8 * 16 + 2 * (8 + 16) + 4 * 4 * 16 * 12 + 4 * 12,
    )


def test_proxy_encoder_defaults_and_errors():
    encoder = ProxyEncoder()
    assert encoder(np.random.rand(3, 32, 32, 1).astype("float32")).shape == (3, 256)
    assert encoder.count_params() == 618_208  # 288 + 18,432 + 73,728 + 448 + 4*4*128*256 + 4*256
    config_round_trip(encoder)
    with pytest.raises(ValueError, match="multiple of groups"):
        ProxyEncoder(filters=(12, 16), groups=8)
    with pytest.raises(ValueError, match="static size"):
        ProxyEncoder(**SMALL_ENCODER)(keras.KerasTensor((None, None, None, 1)))


# --------------------------------------------------------------------------------------------------- VRNNCell
@keras.saving.register_keras_serializable(package="saccade_zoo_tests")
class FlatStateVRNNCell(VRNNCell):
    """Test-only view of VRNNCell for run_layer_test: the state list as one (B, 2 n units) tensor, one output dict."""

    def build(self, proxy_features_shape, noise_shape=None, state_shape=None):
        super().build(proxy_features_shape)

    def call(self, proxy_features, noise, state, training=None):
        states = ops.split(state, 2 * self.num_layers, axis=-1)
        outputs, new_states = super().call(proxy_features, noise, states, training=training)
        return {**outputs, "state": ops.concatenate(new_states, axis=-1)}


def cell_params(features, units, latent, feature_dim, filters, kernel, proxy_shape, num_layers):
    """The VRNNCell's parameter count (docstring formula), BatchNorm moving statistics included."""
    heads = 2 * (units * latent + latent)
    side = proxy_shape[0] // 2 ** len(filters), proxy_shape[1] // 2 ** len(filters)
    seed = side[0] * side[1] * filters[0]
    decoder = (feature_dim + units) * seed + 4 * seed
    for f_in, f_out in zip((filters[0],) + tuple(filters[:-1]), filters):
        decoder += kernel * kernel * f_in * f_out + 2 * f_out
    decoder += 9 * filters[-1] * proxy_shape[2] + proxy_shape[2]
    lstm = 4 * units * (features + feature_dim + units + 1) + (num_layers - 1) * 4 * units * (2 * units + 1)
    initial_prior = 2 * latent  # the learned p(z_1)
    return initial_prior + (units * units + 4 * units + heads) + ((features + units) * units + 4 * units + heads) + (
        latent * feature_dim + 4 * feature_dim) + decoder + lstm


# initial prior, prior, posterior, phi_z, decoder, 2 LSTM layers
TRAINABLE_WEIGHTS = 2 + 7 + 7 + 3 + (3 + 3 * 2 + 2) + 3 * 2
NON_TRAINABLE_WEIGHTS = 8  # moving mean / variance of 4 BatchNorms
# + the seed-generator state each keras LSTMCell keeps for its (unused, rate 0) dropout.
NON_TRAINABLE_VARIABLES = NON_TRAINABLE_WEIGHTS + 2


def test_vrnn_cell_layer():
    b, f, u = 2, 10, SMALL_CELL["units"]
    result = run_layer_test(
        FlatStateVRNNCell,
        SMALL_CELL,
        dict(proxy_features=np.random.rand(b, f).astype("float32"),
             noise=np.random.randn(b, 3).astype("float32"),
             state=np.random.randn(b, 4 * u).astype("float32")),
        expected_output_shape={"z": (b, 3), "mu_q": (b, 3), "logvar_q": (b, 3), "mu_p": (b, 3), "logvar_p": (b, 3),
                               "reconstruction": (b, 16, 16, 2), "h_prev": (b, u), "h": (b, u), "state": (b, 4 * u)},
        expected_num_trainable_weights=TRAINABLE_WEIGHTS,
        expected_num_non_trainable_weights=NON_TRAINABLE_WEIGHTS,
        expected_num_non_trainable_variables=NON_TRAINABLE_VARIABLES,
        expected_num_params=cell_params(f, u, 3, 12, (8, 4), 4, (16, 16, 2), 2),
        moved_weights="any",
    )
    # Every weight moves but the first step's prior, which a call with explicit states does not use.
    assert sum(not moved for moved in result["moved"]) == 2 and sum(result["moved"]) == TRAINABLE_WEIGHTS - 2


def test_vrnn_cell_default_size():
    cell = VRNNCell()
    cell.build((None, 256))
    assert cell.count_params() == cell_params(256, 256, 3, 256, (64, 32), 4, (32, 32, 1), 2) == 3_728_627
    assert len(cell.trainable_weights) == TRAINABLE_WEIGHTS and len(cell.non_trainable_weights) == 8


def small_inputs(batch=4, features=10, seed=0):
    rng = np.random.default_rng(seed)
    cell = VRNNCell(**SMALL_CELL)
    states = [tf.constant(rng.normal(size=(batch, SMALL_CELL["units"])), tf.float32) for _ in range(4)]
    return cell, rng.normal(size=(batch, features)).astype("float32"), states, rng


def test_vrnn_cell_shapes_and_states():
    cell, features, _, _ = small_inputs()
    initial = cell.get_initial_state(4)
    assert len(initial) == 4 and all(s.shape == (4, 16) and not np.any(s.numpy()) for s in initial)
    outputs, states = cell(features, np.zeros((4, 3), "float32"), initial)
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        "z": (4, 3), "mu_q": (4, 3), "logvar_q": (4, 3), "mu_p": (4, 3), "logvar_p": (4, 3),
        "reconstruction": (4, 16, 16, 2), "h_prev": (4, 16), "h": (4, 16)}
    assert [tuple(s.shape) for s in states] == [(4, 16)] * 4
    np.testing.assert_array_equal(outputs["h"], states[2])  # the new top h
    # states=None is the first step: the zero state, and the learned constant prior p(z_1) (N(0, I) at init).
    again, first_states = cell(features, np.zeros((4, 3), "float32"))
    for key in OUTPUT_KEYS:
        if key in ("mu_p", "logvar_p"):
            np.testing.assert_array_equal(again[key], np.zeros((4, 3)))
        else:
            np.testing.assert_allclose(again[key], outputs[key], rtol=1e-6, atol=1e-6)
    for a, b in zip(first_states, states):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="expects 4 state tensors"):
        cell(features, np.zeros((4, 3), "float32"), initial[:2])


def test_vrnn_cell_reparameterisation():
    cell, features, states, rng = small_inputs()
    outputs, _ = cell(features, np.zeros((4, 3), "float32"), states, training=False)
    np.testing.assert_array_equal(outputs["z"], outputs["mu_q"])  # zeros noise: the posterior mean, exactly
    noise = rng.normal(size=(4, 3)).astype("float32")
    noisy, _ = cell(features, noise, states, training=False)
    np.testing.assert_array_equal(noisy["mu_q"], outputs["mu_q"])
    expected = noisy["mu_q"].numpy() + np.exp(0.5 * noisy["logvar_q"].numpy()) * noise
    np.testing.assert_allclose(noisy["z"], expected, rtol=1e-6, atol=1e-6)
    assert not np.allclose(noisy["z"], outputs["z"])
    np.testing.assert_array_equal(outputs["h_prev"], states[2])  # h_{t-1}: the top layer's h


def test_vrnn_cell_log_variances_are_bounded():
    # A huge raw log-variance is soft-clamped to (-8, 8); near zero the clamp is the identity.
    cell, features, states, _ = small_inputs()
    cell(features, np.zeros((4, 3), "float32"), states)
    cell.posterior_logvar.bias.assign(np.array([1e4, -1e4, 0.0], "float32"))
    cell.posterior_logvar.kernel.assign(np.zeros_like(cell.posterior_logvar.kernel.numpy()))
    outputs, _ = cell(features, np.ones((4, 3), "float32"), states, training=False)
    np.testing.assert_allclose(outputs["logvar_q"], np.tile([8.0, -8.0, 0.0], (4, 1)), atol=1e-5)
    assert np.all(np.isfinite(outputs["z"]))
    unbounded = VRNNCell(**SMALL_CELL, logvar_bound=None)
    unbounded(features, np.zeros((4, 3), "float32"), states)
    unbounded.posterior_logvar.bias.assign(np.array([20.0, -20.0, 0.0], "float32"))
    unbounded.posterior_logvar.kernel.assign(np.zeros_like(unbounded.posterior_logvar.kernel.numpy()))
    out, _ = unbounded(features, np.zeros((4, 3), "float32"), states, training=False)
    np.testing.assert_allclose(out["logvar_q"], np.tile([20.0, -20.0, 0.0], (4, 1)), atol=1e-5)


@pytest.mark.parametrize("zero_state", [True, False])
def test_vrnn_cell_prior_ignores_the_proxy_posterior_does_not(zero_state):
    cell, features, states, rng = small_inputs()
    if zero_state:
        states = cell.get_initial_state(4)  # t = 0
    other = rng.normal(size=features.shape).astype("float32")
    noise = rng.normal(size=(4, 3)).astype("float32")
    for training in (False, True):
        a, _ = cell(features, noise, states, training=training)
        b, _ = cell(other, noise, states, training=training)
        np.testing.assert_array_equal(a["mu_p"], b["mu_p"])
        np.testing.assert_array_equal(a["logvar_p"], b["logvar_p"])
        assert not np.allclose(a["mu_q"], b["mu_q"]) and not np.allclose(a["logvar_q"], b["logvar_q"])
        assert not np.allclose(a["reconstruction"], b["reconstruction"])  # through z
    # ... while the prior does follow the recurrent state.
    moved = [s + 1.0 for s in states]
    a, _ = cell(features, noise, states, training=False)
    c, _ = cell(features, noise, moved, training=False)
    assert not np.allclose(a["mu_p"], c["mu_p"])


def gradients(cell, loss_fn, features, noise, states):
    with tf.GradientTape() as tape:
        outputs, new_states = cell(features, noise, states, training=True)
        loss = loss_fn(outputs, new_states)
    paths = [w.path for w in cell.trainable_weights]
    return dict(zip(paths, tape.gradient(loss, cell.trainable_weights)))


def nonzero(grad):
    return grad is not None and float(tf.reduce_max(tf.abs(tf.convert_to_tensor(grad)))) > 0


def test_vrnn_cell_gradients_reach_the_right_weights():
    cell, features, states, rng = small_inputs()
    noise = rng.normal(size=(4, 3)).astype("float32")
    cell(features, noise, states)
    name = cell.name

    def kernels(*layers):
        return [f"{name}/{layer}/kernel" for layer in layers]

    posterior = kernels("posterior_dense", "posterior_mu", "posterior_logvar")
    decoder = kernels("phi_z_dense", "decoder_dense", "decoder_deconv1", "decoder_deconv2", "decoder_out")
    prior = kernels("prior_dense", "prior_mu", "prior_logvar")

    # Reconstruction and z: posterior and decoder weights learn; the prior is not on the path.
    grads = gradients(cell, lambda o, s: tf.reduce_sum(o["reconstruction"] ** 2) + tf.reduce_sum(o["z"] ** 2),
                      features, noise, states)
    assert all(nonzero(grads[p]) for p in posterior + decoder), [p for p in posterior + decoder if not nonzero(grads[p])]
    assert not any(nonzero(grads[p]) for p in prior)

    # The KL: the prior learns (and the posterior).
    grads = gradients(cell, lambda o, s: tf.reduce_sum(gaussian_kl(o["mu_q"], o["logvar_q"], o["mu_p"], o["logvar_p"])),
                      features, noise, states)
    assert all(nonzero(grads[p]) for p in prior + posterior)
    assert not any(nonzero(grads[p]) for p in kernels("decoder_dense", "decoder_out"))

    # The recurrence: the next step's state depends on z (the LSTM sees phi(z_t)).
    grads = gradients(cell, lambda o, s: tf.reduce_sum(s[-2] ** 2), features, noise, states)
    assert all(nonzero(grads[p]) for p in kernels("posterior_mu", "phi_z_dense", "lstm1", "lstm2"))


# ----------------------------------------------------------------------------------------- the T-step unroll
T = 4


def unrolled_model(encoder, cell, steps=T):
    """A Functional model calling the same cell `steps` times (states=None at t = 0), outputs stacked over t."""
    proxy = keras.Input((16, 16, 2), name="proxy")
    noise = keras.Input((steps, 3), name="noise")
    features = encoder(proxy)
    states, per_step = None, []
    for t in range(steps):
        outputs, states = cell(features, noise[:, t], states)
        per_step.append(outputs)
    stacked = {k: ops.stack([o[k] for o in per_step], axis=1) for k in OUTPUT_KEYS}
    return keras.Model({"proxy": proxy, "noise": noise}, stacked)


def vrnn_elbo_loss(outputs, proxy):
    """-(VRNN ELBO) of Eq. 5 per example: sum over t of the proxy's NLL and the KL."""
    loss = 0.0
    for t in range(outputs["z"].shape[1]):
        loss += gaussian_nll(proxy, outputs["reconstruction"][:, t])
        loss += gaussian_kl(outputs["mu_q"][:, t], outputs["logvar_q"][:, t],
                            outputs["mu_p"][:, t], outputs["logvar_p"][:, t])
    return loss


@pytest.fixture(scope="module")
def unrolled():
    keras.utils.set_random_seed(0)
    encoder, cell = ProxyEncoder(**SMALL_ENCODER), VRNNCell(**SMALL_CELL)
    model = unrolled_model(encoder, cell)
    rng = np.random.default_rng(5)
    data = {"proxy": rng.random((3, 16, 16, 2)).astype("float32"),
            "noise": rng.normal(size=(3, T, 3)).astype("float32")}
    return model, encoder, cell, data


def test_unrolled_functional_model_matches_an_eager_loop(unrolled):
    model, encoder, cell, data = unrolled
    # One set of weights, shared by the T steps.
    assert len(cell.trainable_weights) == TRAINABLE_WEIGHTS
    assert len(model.trainable_weights) == TRAINABLE_WEIGHTS + len(encoder.trainable_weights)
    assert model.count_params() == cell.count_params() + encoder.count_params()
    out = model(data, training=False)
    assert out["z"].shape == (3, T, 3) and out["reconstruction"].shape == (3, T, 16, 16, 2)
    features = encoder(data["proxy"], training=False)
    states = cell.get_initial_state(3)
    for t in range(T):
        step, states = cell(features, data["noise"][:, t], states, training=False)
        for key in OUTPUT_KEYS:
            np.testing.assert_allclose(out[key][:, t], step[key], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out["h_prev"][:, 1:], out["h"][:, :-1])  # h_{t-1} carried over
    assert not np.allclose(out["mu_p"][:, 0], out["mu_p"][:, 1])  # the prior follows the state
    assert len(cell.trainable_weights) == TRAINABLE_WEIGHTS  # calling again adds nothing


def test_unrolled_model_trains_on_the_vrnn_elbo(unrolled):
    model, _, _, data = unrolled
    optimizer = keras.optimizers.Adam(1e-3)
    before = [w.numpy().copy() for w in model.trainable_weights]
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(vrnn_elbo_loss(model(data, training=True), data["proxy"]))
    grads = tape.gradient(loss, model.trainable_weights)
    assert np.isfinite(loss.numpy())
    missing = [w.path for w, g in zip(model.trainable_weights, grads) if not nonzero(g)]
    assert not missing, missing
    optimizer.apply_gradients(zip(grads, model.trainable_weights))
    assert all(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))


def test_unrolled_model_save_and_load(unrolled, tmp_path):
    model, _, _, data = unrolled
    expected = model(data, training=False)
    path = str(tmp_path / "vrnn.keras")
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    got = loaded(data, training=False)
    for key in OUTPUT_KEYS:
        np.testing.assert_array_equal(got[key], expected[key])
    assert len(loaded.weights) == len(model.weights)


def test_vrnn_cell_config_and_errors():
    cell = VRNNCell(**SMALL_CELL, logvar_bound=5.0, decoder_kernel_size=3)
    clone = config_round_trip(cell)
    assert clone.proxy_shape == (16, 16, 2) and clone.logvar_bound == 5.0 and clone.decoder_kernel_size == 3
    config_round_trip(VRNNCell())
    with pytest.raises(ValueError, match=r"30x30 must be divisible by 2\^len\(decoder_filters\) = 4"):
        VRNNCell(proxy_shape=(30, 30, 1))
    with pytest.raises(ValueError, match=r"= 8"):
        VRNNCell(proxy_shape=(36, 36, 1), decoder_filters=(32, 32, 32))
    with pytest.raises(ValueError, match="multiple of groups"):
        VRNNCell(decoder_filters=(64, 20))
    with pytest.raises(ValueError, match="logvar_bound"):
        VRNNCell(logvar_bound=0.0)
    with pytest.raises(ValueError, match="at least one entry"):
        VRNNCell(decoder_filters=())


def test_unrolled_model_converts_to_tflite_with_builtin_ops(unrolled, tmp_path):
    # The zoo's export path (SavedModel -> TFLITE_BUILTINS only, as `saccade_zoo.export.convert_tflite` does): the
    # unrolled VRNN converts and LiteRT reproduces the Keras outputs.
    from ai_edge_litert.interpreter import Interpreter

    from saccade_zoo.export.tflite import convert_tflite

    model, _, _, data = unrolled

    def serve(proxy, noise):
        out = model({"proxy": proxy, "noise": noise}, training=False)
        return {"z": out["z"], "reconstruction": out["reconstruction"]}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", serve, input_signature=[tf.TensorSpec((None, 16, 16, 2), name="proxy"),
                                                           tf.TensorSpec((None, T, 3), name="noise")])
    archive.write_out(str(tmp_path / "saved"), verbose=False)
    content = convert_tflite(tmp_path / "saved", "float32")
    runner = Interpreter(model_content=content).get_signature_runner("serving_default")
    got = runner(proxy=data["proxy"], noise=data["noise"])
    expected = serve(data["proxy"], data["noise"])
    for key in ("z", "reconstruction"):
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-4, atol=1e-4)
