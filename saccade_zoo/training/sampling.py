"""Gumbel and Gaussian noise keyed on (example content, training step, trajectory).

REINFORCE samples glimpse trajectories (Gumbel-max); a variational model samples its latents (reparameterised
Gaussian noise). Drawing them from a per-example key instead of a stateful generator
makes a training step independent of how the batch is split across replicas (1 device and N replicas sample
the same trajectories) and of process restarts (a resumed run samples what the uninterrupted run would have).
"""
import tensorflow as tf


def example_keys(images):
    """(B,) int64 keys: a 64-bit fingerprint of each image's bytes."""
    return tf.bitcast(tf.fingerprint(images), tf.int64)


def _keyed(keys, step, trajectory, shape, seed, transform):
    """``transform(uniform draws of shape)`` per key: (B, *shape), a pure function of (key, step, trajectory, seed)."""
    salt = tf.cast(step, tf.int64) * 1_000_003 + int(trajectory) * 7_919 + int(seed)
    seeds = tf.stack([keys, tf.fill(tf.shape(keys), salt)], axis=1)

    def draw(s):
        # The transform runs per example on a fixed shape: vectorised log kernels round differently depending on
        # the tensor size, and the noise must be bit-identical however the batch is split.
        return transform(tf.random.stateless_uniform(shape, seed=s, minval=1e-7, maxval=1.0 - 1e-7))

    return tf.map_fn(draw, seeds, fn_output_signature=tf.TensorSpec(shape, tf.float32))


def keyed_gumbel(keys, step, trajectory, shape, seed=0):
    """Gumbel(0, 1) noise of ``shape`` for each key: (B, *shape), a pure function of (key, step, trajectory, seed)."""
    return _keyed(keys, step, trajectory, shape, seed, lambda u: -tf.math.log(-tf.math.log(u)))


def keyed_normal(keys, step, trajectory, shape, seed=0):
    """Standard-normal noise of ``shape`` for each key (the reparameterisation noise of a Gaussian latent), by the
    inverse CDF of the same keyed uniform draws: (B, *shape), a pure function of (key, step, trajectory, seed)."""
    return _keyed(keys, step, trajectory, shape, seed, lambda u: tf.math.ndtri(u))


def keyed_uniform(keys, step, trajectory, shape, low=-1.0, high=1.0, seed=0):
    """Uniform noise on [low, high) of ``shape`` for each key (e.g. RAM's random-glimpse baseline locations):
    (B, *shape), a pure function of (key, step, trajectory, seed)."""
    return _keyed(keys, step, trajectory, shape, seed, lambda u: low + (high - low) * u)
