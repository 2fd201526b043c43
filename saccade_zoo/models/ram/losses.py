"""Loss terms of the recurrent attention models (RAM, DRAM): REINFORCE for a Gaussian location policy with fixed
standard deviation, and the regression of a learned baseline on the reward. Per example (B,), like
`saccade_zoo.training.losses`."""
import math

import tensorflow as tf


def gaussian_log_prob(samples, means, std):
    """log N(samples; means, std^2 I) of an isotropic Gaussian over the last axis: (..., d) -> (...).

    ``std`` is a fixed number (RAM's location policy: the variance is not learned), so only ``means`` carries a
    gradient: d log p / d mu = (sample - mu) / std^2."""
    samples = tf.cast(samples, tf.float32)
    means = tf.cast(means, tf.float32)
    dims = float(samples.shape[-1])
    z = (samples - means) / float(std)
    return -0.5 * tf.reduce_sum(tf.square(z), axis=-1) - dims * (math.log(float(std)) + 0.5 * math.log(2 * math.pi))


def gaussian_reinforce(samples, means, std, advantages):
    """REINFORCE (Williams 1992) for the K location actions of each example: ``-sum_k log pi(l_k | h_k) * A_k``.

    Args:
        samples: (B, K, 2) the locations the policy drew (before any clipping into the image).
        means: (B, K, 2) the policy's means that drew them.
        std: the policy's fixed standard deviation.
        advantages: (B, K) reward minus baseline, treated as constants (no gradient through them).
    Returns (B,) losses.
    """
    log_prob = gaussian_log_prob(tf.stop_gradient(samples), means, std)  # (B, K)
    return -tf.reduce_sum(log_prob * tf.stop_gradient(tf.cast(advantages, tf.float32)), axis=1)


def baseline_regression(baselines, rewards):
    """Squared error of a learned baseline b_k (B, K) regressed on the reward (B,) (RAM: "the baseline is learned
    by reducing the squared error between R and b"), summed over the K actions: (B,)."""
    rewards = tf.stop_gradient(tf.cast(rewards, tf.float32))[:, None]
    return tf.reduce_sum(tf.square(rewards - tf.cast(baselines, tf.float32)), axis=1)
