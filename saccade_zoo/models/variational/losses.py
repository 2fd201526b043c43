"""Variational saccading's own loss terms (Ramapuram et al.): the two per-step terms of the VRNN ELBO in Eq. 5,

    sum_t [ log p(c | z_<=t) - KL(q(z_t | c, z_<t) || p(z_t | z_<t)) ],

written as losses to minimise: `gaussian_nll` is -log p(c | z_<=t) and `gaussian_kl` the KL, both per example, like
`saccade_zoo.training.losses`. Eq. 5 adds the ELBO to the classification log-likelihood (a sum: the authors' code
multiplied them, see the reference notes); summing the two terms over the T steps and weighting the KL is the
model's business.

Both compute in float32 whatever their inputs' dtype (under mixed precision the VRNN's outputs may be float16), and
both take log-variances (never standard deviations: the authors' code passed the posterior's log-variance as a
standard deviation into its KL).
"""
import math

import tensorflow as tf

LOG_2PI = math.log(2.0 * math.pi)


def _f32(x):
    return tf.cast(x, tf.float32)


def gaussian_kl(mu_q, logvar_q, mu_p, logvar_p):
    """KL(q || p) of diagonal Gaussians, summed over the last axis: Eq. 5's KL(q(z_t | c, z_<t) || p(z_t | z_<t)).

    KL(N(mu_q, diag exp(logvar_q)) || N(mu_p, diag exp(logvar_p)))
        = 0.5 * sum(logvar_p - logvar_q + (exp(logvar_q) + (mu_q - mu_p)^2) / exp(logvar_p) - 1),
    evaluated as 0.5 * sum(logvar_p - logvar_q + exp(logvar_q - logvar_p) + (mu_q - mu_p)^2 exp(-logvar_p) - 1)
    (the same value; no exp(logvar_q) / exp(logvar_p) ratio of two large numbers).

    Args:
        mu_q, logvar_q: the posterior's mean and log-variance, (..., L).
        mu_p, logvar_p: the prior's, broadcastable to the same shape (e.g. 0.0 for a standard-normal prior).
    Returns:
        (...,) float32, >= 0, zero exactly when q == p.
    """
    mu_q, logvar_q, mu_p, logvar_p = (_f32(v) for v in (mu_q, logvar_q, mu_p, logvar_p))
    per_dim = logvar_p - logvar_q + tf.exp(logvar_q - logvar_p) + tf.square(mu_q - mu_p) * tf.exp(-logvar_p) - 1.0
    return 0.5 * tf.reduce_sum(per_dim, axis=-1)


def gaussian_nll(x, mean, logvar=0.0):
    """-log N(x; mean, exp(logvar)) summed over every non-batch axis: Eq. 5's -log p(c | z_<=t) with x = c.

    Per element 0.5 * (log(2 pi) + logvar + (x - mean)^2 exp(-logvar)). The 0.5 log(2 pi) constant is included, so
    the value is a true negative log-density (comparable across models and to published nats); it adds
    0.5 log(2 pi) = 0.919 per element (941 nats for a 32x32x1 proxy) and no gradient. With the default logvar = 0
    (the VRNN's unit-variance decoder) it is 0.5 * squared error + that constant.

    Args:
        x: (B, ...) the target (the proxy c).
        mean: (B, ...) the decoder's mean (the reconstruction), same shape.
        logvar: scalar or a tensor broadcastable to x's shape.
    Returns:
        (B,) float32.
    """
    x, mean, logvar = _f32(x), _f32(mean), _f32(logvar)
    per_element = 0.5 * (LOG_2PI + logvar + tf.square(x - mean) * tf.exp(-logvar))
    axes = list(range(1, per_element.shape.rank))
    return tf.reduce_sum(per_element, axis=axes) if axes else per_element
