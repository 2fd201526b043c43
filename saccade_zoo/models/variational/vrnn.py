"""The VRNN of variational saccading (Ramapuram et al., Eq. 5 and appendix 7.6), after Chung et al. 2015.

Per step t, over the proxy image c (the same c at every step) and the recurrent state h_{t-1}:

- prior      p(z_t | z_<t)      = N(mu_p(h_{t-1}), exp(logvar_p(h_{t-1})))        (learned, appendix 7.6 item 1)
- posterior  q(z_t | c, z_<t)   = N(mu_q(c, h_{t-1}), exp(logvar_q(c, h_{t-1})))
- decoder    p(c | z_<=t)       = N(dec(phi(z_t), h_{t-1}), I)                      (the proxy's reconstruction)
- recurrence h_t = LSTM([features(c), phi(z_t)], h_{t-1})

The state is updated from the proxy features and z_t only, never from the crop the glimpse reads, so all T glimpse
boxes of an image are known from the proxy alone (see the reference notes, "design consequences").

Paper, appendix 7.6: "batch-norm was used for dense layers and group-norm for convolutional layers" and "conv-transpose
layers are used for upsampling from the vectorized latent space". Every layer here is Dense / Conv2D /
Conv2DTranspose / GroupNormalization / BatchNormalization / LSTMCell math (TFLite built-in ops); the randomness of the
reparameterisation comes in as an input (``noise``), never from a random op inside ``call``.

Normalisation constants: BatchNorm as the authors' PyTorch code (PyTorch defaults: momentum 0.9 in Keras terms, 0.1 in
PyTorch's; epsilon 1e-5); GroupNorm epsilon 0.1 instead of PyTorch's 1e-5 (`GN_EPSILON`: blank glimpses).
"""
import numpy as np

import keras
from keras import ops

BN_MOMENTUM = 0.9
NORM_EPSILON = 1e-5  # BatchNormalization (PyTorch's default)
# GroupNormalization: 0.1, not 1e-5. Cluttered canvases are mostly exact zeros, so a glimpse (or a proxy region) of
# blank background has (near-)zero variance per group, and GroupNorm divides by sqrt(var + eps): with eps = 1e-5 each
# layer amplified rounding noise up to ~300x, and 1e-6 of input noise moved an untrained crop classifier's logits by
# 1.3 (a float32 TFLite file then missed Keras by 1e-3, float16 by 9% of the logit scale). With 0.1 the same noise
# moves them by 1.4e-4, while groups of unit-scale activations are scaled by 1/sqrt(1.1) only.
GN_EPSILON = 0.1
DEFAULT_HEAD_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 0.01, "mode": "fan_in", "distribution": "truncated_normal", "seed": None},
}


def _check_groups(filters, groups, owner):
    for f in filters:
        if f < 1 or f % groups:
            raise ValueError(
                f"{owner}: every filter count must be a positive multiple of groups={groups} (GroupNormalization), "
                f"got {tuple(filters)}."
            )


def _positive(value, name, owner):
    value = int(value)
    if value < 1:
        raise ValueError(f"{owner} {name} must be >= 1, got {value!r}.")
    return value


class _NormMixin:
    """Factories for the sub-layers, all with the owning layer's dtype policy."""

    def _dense(self, units, name, use_bias=False, kernel_initializer=None):
        return keras.layers.Dense(
            units,
            use_bias=use_bias,
            kernel_initializer=self.kernel_initializer if kernel_initializer is None else kernel_initializer,
            name=name,
            dtype=self.dtype_policy,
        )

    def _batch_norm(self, name):
        return keras.layers.BatchNormalization(
            momentum=BN_MOMENTUM,
            epsilon=NORM_EPSILON,
            synchronized=self.synchronized_bn,
            name=name,
            dtype=self.dtype_policy,
        )

    def _group_norm(self, name):
        return keras.layers.GroupNormalization(
            groups=self.groups, epsilon=GN_EPSILON, name=name, dtype=self.dtype_policy
        )


@keras.saving.register_keras_serializable(package="saccade_zoo")
class ProxyEncoder(_NormMixin, keras.layers.Layer):
    """Features of the proxy image c, the input of the VRNN's posterior and recurrence (appendix 7.6).

    For each entry of ``filters``: a 3x3 stride-2 "same" Conv2D (no bias) + GroupNormalization + ReLU (group-norm on
    convs); then flatten, Dense(feature_dim, no bias) + BatchNormalization + ReLU (batch-norm on dense layers).

    Args:
        filters: channels of the stride-2 convs; each a multiple of ``groups``. A J x J proxy leaves a
            ceil(J / 2^len(filters)) square map.
        feature_dim: F, the size of the feature vector.
        groups: GroupNormalization groups.
        kernel_initializer: of the convs and the dense layer.
        synchronized_bn: global-batch BatchNorm statistics under a distribution strategy.

    Call args:
        proxy: (B, J, J, Cp) float, with a static spatial size (the flatten feeds a Dense layer).
        training: BatchNorm mode.

    Returns:
        (B, feature_dim) in the compute dtype.

    Parameters (Cp input channels, filters f_1..f_k, final map s x s):
        sum_i 9 f_{i-1} f_i + 2 sum_i f_i (GroupNorm) + s^2 f_k F + 4 F (BatchNorm, half of it non-trainable),
        with f_0 = Cp. At the defaults and a 32x32x1 proxy: 618,208.
    """

    def __init__(self, filters=(32, 64, 128), feature_dim=256, groups=8, kernel_initializer="he_normal",
                 synchronized_bn=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = tuple(int(f) for f in filters)
        if not self.filters:
            raise ValueError("ProxyEncoder filters must have at least one entry.")
        self.feature_dim = _positive(feature_dim, "feature_dim", "ProxyEncoder")
        self.groups = _positive(groups, "groups", "ProxyEncoder")
        _check_groups(self.filters, self.groups, "ProxyEncoder")
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.synchronized_bn = bool(synchronized_bn)
        self.convs, self.norms = [], []
        for i, f in enumerate(self.filters):
            self.convs.append(keras.layers.Conv2D(
                f, 3, strides=2, padding="same", use_bias=False, kernel_initializer=self.kernel_initializer,
                name=f"conv{i + 1}", dtype=self.dtype_policy,
            ))
            self.norms.append(self._group_norm(f"gn{i + 1}"))
        self.dense = self._dense(self.feature_dim, "dense")
        self.dense_bn = self._batch_norm("dense_bn")

    def build(self, proxy_shape):
        if len(proxy_shape) != 4 or any(d is None for d in proxy_shape[1:]):
            raise ValueError(
                f"ProxyEncoder needs a (B, J, J, C) proxy with a static size, got shape {tuple(proxy_shape)}."
            )
        shape = tuple(proxy_shape)
        for conv, norm in zip(self.convs, self.norms):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            norm.build(shape)
        flat = shape[1] * shape[2] * shape[3]
        self.dense.build((shape[0], flat))
        self.dense_bn.build((shape[0], self.feature_dim))

    def call(self, proxy, training=None):
        x = proxy
        for conv, norm in zip(self.convs, self.norms):
            x = ops.relu(norm(conv(x)))
        x = ops.reshape(x, (-1, x.shape[1] * x.shape[2] * x.shape[3]))
        return ops.relu(self.dense_bn(self.dense(x), training=training))

    def compute_output_shape(self, proxy_shape):
        return (proxy_shape[0], self.feature_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            feature_dim=self.feature_dim,
            groups=self.groups,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            synchronized_bn=self.synchronized_bn,
        )
        return config


@keras.saving.register_keras_serializable(package="saccade_zoo")
class VRNNCell(_NormMixin, keras.layers.Layer):
    """One step of the variational saccading VRNN (Eq. 5's "VRNN ELBO" terms; appendix 7.6).

    With h = h_{t-1}, the top LSTM layer's h in ``states``, and f = proxy features (`ProxyEncoder`):

    - prior p(z_t | h_{t-1}): Dense(units) + BN + ReLU on h, then Dense heads -> mu_p, logvar_p. It never sees the
      proxy (appendix 7.6: "learned as a function of the previous RNN hidden state"). At the first step h_0 = 0,
      so the prior is a learned constant (``initial_prior_mean``, ``initial_prior_logvar``: N(0, I) at
      initialisation), not the BatchNorm of a zero batch (whose training and inference values would differ).
    - posterior q(z_t | c, h_{t-1}): Dense(units) + BN + ReLU on [f, h], then heads -> mu_q, logvar_q.
    - z_t = mu_q + exp(0.5 logvar_q) * noise (reparameterisation; pathwise gradients, paper section 2).
    - phi(z_t) = Dense(feature_dim) + BN + ReLU of z_t.
    - decoder p(c | z_<=t): Dense on [phi(z_t), h] + BN + ReLU to a (J / 2^k) x (J / 2^k) x decoder_filters[0] map,
      then per entry of ``decoder_filters`` a stride-2 Conv2DTranspose ("same", no bias) + GroupNorm + ReLU, then a
      3x3 Conv2D to Cp channels, linear: ``reconstruction``, the mean of a unit-variance Gaussian over the proxy
      (score it with `losses.gaussian_nll(c, reconstruction)`).
    - recurrence: ``num_layers`` stacked LSTM cells on [f, phi(z_t)] -> the new states.

    Log-variances are log-variances everywhere (the authors' code passed the posterior's log-variance as a standard
    deviation into its KL; here nothing does). Each log-variance head's raw output r is soft-clamped to
    ``logvar_bound * tanh(r / logvar_bound)`` (identity near 0, slope 1 at 0): with the default 8, variances stay in
    [exp(-8), exp(8)] = [3.4e-4, 2981] (standard deviations 0.018 to 55), so exp can neither overflow nor make the
    KL's 1 / var_p blow up in a long run, also in float16. ``logvar_bound=None`` leaves them unbounded. The heads
    start small (``head_initializer``: VarianceScaling(0.01), zero biases): mu ~ 0 and logvar ~ 0 (unit variance) at
    initialisation.

    Unrolling: a model calls the same cell T times (a Python loop; T = 4 in the reference), symbolically in a
    Functional model or eagerly. Pass ``states=None`` at the first step: the cell starts from zeros of the right
    (possibly unknown) batch size, which `get_initial_state` cannot give outside a layer in a Functional graph.
    Every BatchNorm is shared by the T steps: in training it normalises each step's batch and its moving
    statistics average over the steps.

    Args:
        proxy_shape: (J, J, Cp) of the proxy c (H and W may differ); each side divisible by 2^len(decoder_filters).
        latent_dim: size of z (3 in the paper: scale, x, y).
        units: LSTM units, also the width of the prior / posterior hidden layers.
        num_layers: stacked LSTM layers (2 in the reference).
        feature_dim: width of phi(z).
        decoder_filters: channels of the decoder's conv-transpose layers, coarsest first; multiples of ``groups``.
        groups: GroupNormalization groups.
        decoder_kernel_size: Conv2DTranspose kernel (4: every output pixel gets the same number of taps at stride 2).
        logvar_bound: soft bound of the log-variances (None: unbounded).
        posterior_variance: None (learned, the paper's model) or a fixed sigma^2 of the posterior (the paper's
            ablation, Fig. 4 right: sigma^2 in {0.6, 0.9, 1.2, 1.4, 1.6, 2.0, 5.0}); the log-variance head is then
            unused.
        kernel_initializer: of the hidden dense and conv layers; ``head_initializer``: of the mu / logvar heads.
        synchronized_bn: global-batch BatchNorm statistics under a distribution strategy.

    Call args:
        proxy_features: (B, F) from `ProxyEncoder` (any F; fixed at build).
        noise: (B, latent_dim) standard-normal draws; None (or zeros) gives the posterior mean (inference).
        states: list [h_1, c_1, ..., h_n, c_n] of (B, units), or None at the first step (zero states, and the
            learned first-step prior instead of the conditional prior of h = 0).
        training: BatchNorm mode.
        decode: run the decoder (False at inference: the outputs then have no ``reconstruction`` and the decoder is
            not run, so an inference graph or a TFLite file does not compute it).

    Returns:
        (outputs, new_states): outputs is a dict with ``z``, ``mu_q``, ``logvar_q``, ``mu_p``, ``logvar_p``
        (B, latent_dim), ``reconstruction`` (B, J, J, Cp), ``h_prev`` (h_{t-1}) and ``h`` (h_t), (B, units);
        new_states the list of the LSTM stack's new [h, c] pairs. All in the compute dtype.

    Parameters (F = proxy feature size, U = units, D = feature_dim, L = latent_dim, s = J / 2^k, f_i the decoder
    filters, Cp proxy channels; BN counts 4 per channel, half non-trainable):
        prior U^2 + 4U + 2(UL + L); posterior (F + U)U + 4U + 2(UL + L); phi LD + 4D;
        decoder (D + U) s^2 f_1 + 4 s^2 f_1 + sum_i (K^2 f_{i-1} f_i + 2 f_i) + 9 f_k Cp + Cp (f_0 = f_1);
        LSTM 4U(F + D + U + 1) + (n - 1) 4U(2U + 1).
        Plus 2L for the first step's learned prior. At the defaults (F = 256, 32x32x1 proxy): 3,728,627 (9,728 of them BatchNorm moving statistics), of which
        the decoder's first Dense is 2,097,152 and the LSTM stack 1,312,768.
    """

    def __init__(
        self,
        proxy_shape=(32, 32, 1),
        latent_dim=3,
        units=256,
        num_layers=2,
        feature_dim=256,
        decoder_filters=(64, 32),
        groups=8,
        decoder_kernel_size=4,
        logvar_bound=8.0,
        kernel_initializer="he_normal",
        head_initializer=DEFAULT_HEAD_INITIALIZER,
        synchronized_bn=False,
        posterior_variance=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if posterior_variance is not None:
            posterior_variance = float(posterior_variance)
            if not posterior_variance > 0:
                raise ValueError(f"posterior_variance must be > 0 or None (learned), got {posterior_variance!r}.")
        self.posterior_variance = posterior_variance
        owner = "VRNNCell"
        self.proxy_shape = tuple(int(d) for d in proxy_shape)
        if len(self.proxy_shape) != 3 or min(self.proxy_shape) < 1:
            raise ValueError(f"{owner} proxy_shape must be (J, J, Cp) with positive sizes, got {proxy_shape!r}.")
        self.latent_dim = _positive(latent_dim, "latent_dim", owner)
        self.units = _positive(units, "units", owner)
        self.num_layers = _positive(num_layers, "num_layers", owner)
        self.feature_dim = _positive(feature_dim, "feature_dim", owner)
        self.decoder_filters = tuple(int(f) for f in decoder_filters)
        if not self.decoder_filters:
            raise ValueError(f"{owner} decoder_filters must have at least one entry.")
        self.groups = _positive(groups, "groups", owner)
        _check_groups(self.decoder_filters, self.groups, owner)
        self.decoder_kernel_size = _positive(decoder_kernel_size, "decoder_kernel_size", owner)
        factor = 2 ** len(self.decoder_filters)
        height, width, channels = self.proxy_shape
        if height % factor or width % factor:
            raise ValueError(
                f"{owner}: the proxy's sides {height}x{width} must be divisible by 2^len(decoder_filters) = {factor} "
                f"(the decoder upsamples a {height / factor}x{width / factor} map {len(self.decoder_filters)} times "
                "by 2); change proxy_shape or decoder_filters."
            )
        if logvar_bound is not None:
            logvar_bound = float(logvar_bound)
            if logvar_bound <= 0:
                raise ValueError(f"{owner} logvar_bound must be > 0 or None, got {logvar_bound!r}.")
        self.logvar_bound = logvar_bound
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.head_initializer = keras.initializers.get(head_initializer)
        self.synchronized_bn = bool(synchronized_bn)
        self._seed_size = (height // factor, width // factor)

        def head(name):
            return self._dense(self.latent_dim, name, use_bias=True, kernel_initializer=self.head_initializer)

        self.prior_dense = self._dense(self.units, "prior_dense")
        self.prior_bn = self._batch_norm("prior_bn")
        self.prior_mu = head("prior_mu")
        self.prior_logvar = head("prior_logvar")
        self.posterior_dense = self._dense(self.units, "posterior_dense")
        self.posterior_bn = self._batch_norm("posterior_bn")
        self.posterior_mu = head("posterior_mu")
        self.posterior_logvar = head("posterior_logvar")
        self.phi_z_dense = self._dense(self.feature_dim, "phi_z_dense")
        self.phi_z_bn = self._batch_norm("phi_z_bn")
        seed_h, seed_w = self._seed_size
        self.decoder_dense = self._dense(seed_h * seed_w * self.decoder_filters[0], "decoder_dense")
        self.decoder_bn = self._batch_norm("decoder_bn")
        self.decoder_deconvs, self.decoder_norms = [], []
        for i, f in enumerate(self.decoder_filters):
            self.decoder_deconvs.append(keras.layers.Conv2DTranspose(
                f, self.decoder_kernel_size, strides=2, padding="same", use_bias=False,
                kernel_initializer=self.kernel_initializer, name=f"decoder_deconv{i + 1}", dtype=self.dtype_policy,
            ))
            self.decoder_norms.append(self._group_norm(f"decoder_gn{i + 1}"))
        self.decoder_out = keras.layers.Conv2D(
            channels, 3, padding="same", name="decoder_out", dtype=self.dtype_policy
        )
        self.lstm_cells = [
            keras.layers.LSTMCell(self.units, name=f"lstm{i + 1}", dtype=self.dtype_policy)
            for i in range(self.num_layers)
        ]

    # ----------------------------------------------------------------------------------------------------- build
    def build(self, proxy_features_shape, noise_shape=None, states_shape=None):
        features = proxy_features_shape[-1]
        if features is None:
            raise ValueError("VRNNCell needs proxy_features with a static last dimension.")
        u, d = self.units, self.feature_dim
        self.initial_prior_mean = self.add_weight(shape=(self.latent_dim,), initializer="zeros",
                                                  name="initial_prior_mean")
        self.initial_prior_logvar = self.add_weight(shape=(self.latent_dim,), initializer="zeros",
                                                    name="initial_prior_logvar")
        self.prior_dense.build((None, u))
        self.prior_bn.build((None, u))
        self.posterior_dense.build((None, features + u))
        self.posterior_bn.build((None, u))
        for head in (self.prior_mu, self.prior_logvar, self.posterior_mu, self.posterior_logvar):
            head.build((None, u))
        self.phi_z_dense.build((None, self.latent_dim))
        self.phi_z_bn.build((None, d))
        self.decoder_dense.build((None, d + u))
        self.decoder_bn.build((None, self.decoder_dense.units))
        shape = (None, *self._seed_size, self.decoder_filters[0])
        for deconv, norm in zip(self.decoder_deconvs, self.decoder_norms):
            deconv.build(shape)
            shape = deconv.compute_output_shape(shape)
            norm.build(shape)
        self.decoder_out.build(shape)
        inputs = features + d
        for cell in self.lstm_cells:
            cell.build((None, inputs))
            inputs = u

    # ----------------------------------------------------------------------------------------------------- state
    def get_initial_state(self, batch_size):
        """[h_1, c_1, ..., h_n, c_n]: zeros (batch_size, units) in the compute dtype."""
        return [ops.zeros((batch_size, self.units), dtype=self.compute_dtype) for _ in range(2 * self.num_layers)]

    @staticmethod
    def _lstm_step(cell, x, h, c):
        """One step of a Keras ``LSTMCell`` (its weights; gates i, f, g, o; sigmoid / tanh) written out, so that the
        first step (h = c = 0: ``h``, ``c`` None) skips the recurrent product and the forget term instead of
        computing them on zeros. (Same values; but a full-int8 TFLite graph cannot quantize a tensor that is
        always 0, and XNNPACK then refuses the model.)"""
        gates = ops.matmul(x, cell.kernel) + cell.bias
        if h is not None:
            gates = gates + ops.matmul(h, cell.recurrent_kernel)
        i, f, g, o = ops.split(gates, 4, axis=-1)
        c_new = ops.sigmoid(i) * ops.tanh(g)
        if c is not None:
            c_new = c_new + ops.sigmoid(f) * c
        return ops.sigmoid(o) * ops.tanh(c_new), c_new

    def _bounded(self, logvar):
        if self.logvar_bound is None:
            return logvar
        return self.logvar_bound * ops.tanh(logvar / self.logvar_bound)

    # ------------------------------------------------------------------------------------------------------ call
    def call(self, proxy_features, noise=None, states=None, training=None, decode=True):
        first = states is None
        if first:
            states = self.get_initial_state(ops.shape(proxy_features)[0])
        states = list(states)
        if len(states) != 2 * self.num_layers:
            raise ValueError(
                f"VRNNCell expects {2 * self.num_layers} state tensors [h_1, c_1, ..., h_n, c_n] for "
                f"num_layers={self.num_layers}, got {len(states)}."
            )
        h = states[-2]  # h_{t-1} of the top LSTM layer

        # Posterior q(z_t | c, h_{t-1}) and its reparameterised sample.
        posterior = ops.concatenate([proxy_features, h], axis=-1)
        posterior = ops.relu(self.posterior_bn(self.posterior_dense(posterior), training=training))
        mu_q = self.posterior_mu(posterior)
        logvar_q = self._bounded(self.posterior_logvar(posterior))
        if self.posterior_variance is not None:  # the paper's ablation: a fixed isotropic variance
            logvar_q = ops.zeros_like(logvar_q) + float(np.log(self.posterior_variance))

        # Prior p(z_t | h_{t-1}): a function of the recurrent state only. At the first step h_0 = 0 is fixed, so
        # the prior is a constant: the learned unconditional prior p(z_1) = N(initial_prior_mean,
        # exp(initial_prior_logvar)), N(0, I) at initialisation.
        if first:
            mu_p = ops.broadcast_to(ops.cast(self.initial_prior_mean, mu_q.dtype)[None], ops.shape(mu_q))
            logvar_p = ops.broadcast_to(ops.cast(self._bounded(self.initial_prior_logvar), mu_q.dtype)[None],
                                        ops.shape(mu_q))
        else:
            prior = ops.relu(self.prior_bn(self.prior_dense(h), training=training))
            mu_p = self.prior_mu(prior)
            logvar_p = self._bounded(self.prior_logvar(prior))
        z = mu_q if noise is None else mu_q + ops.exp(0.5 * logvar_q) * ops.cast(noise, mu_q.dtype)

        phi_z = ops.relu(self.phi_z_bn(self.phi_z_dense(z), training=training))

        # Decoder p(c | z_<=t): the mean of a unit-variance Gaussian over the proxy (only the ELBO needs it).
        reconstruction = None
        if decode:
            x = ops.concatenate([phi_z, h], axis=-1)
            x = ops.relu(self.decoder_bn(self.decoder_dense(x), training=training))
            x = ops.reshape(x, (-1, *self._seed_size, self.decoder_filters[0]))
            for deconv, norm in zip(self.decoder_deconvs, self.decoder_norms):
                x = ops.relu(norm(deconv(x)))
            reconstruction = self.decoder_out(x)

        # Recurrence: h_t from [features(c), phi(z_t)] (never from the glimpse).
        inputs = ops.concatenate([proxy_features, phi_z], axis=-1)
        new_states = []
        for i, cell in enumerate(self.lstm_cells):
            inputs, c_i = self._lstm_step(cell, inputs, None if first else states[2 * i],
                                          None if first else states[2 * i + 1])
            new_states.extend([inputs, c_i])

        outputs = {
            "z": z,
            "mu_q": mu_q,
            "logvar_q": logvar_q,
            "mu_p": mu_p,
            "logvar_p": logvar_p,
            "h_prev": h,
            "h": inputs,
        }
        if decode:
            outputs["reconstruction"] = reconstruction
        return outputs, new_states

    def get_config(self):
        config = super().get_config()
        config.update(
            proxy_shape=self.proxy_shape,
            latent_dim=self.latent_dim,
            units=self.units,
            num_layers=self.num_layers,
            feature_dim=self.feature_dim,
            decoder_filters=self.decoder_filters,
            groups=self.groups,
            decoder_kernel_size=self.decoder_kernel_size,
            logvar_bound=self.logvar_bound,
            posterior_variance=self.posterior_variance,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            head_initializer=keras.initializers.serialize(self.head_initializer),
            synchronized_bn=self.synchronized_bn,
        )
        return config
