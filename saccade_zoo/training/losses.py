"""Loss terms of the Saccader paper (Elsayed et al. 2019, Eqs. 4-6), per example so that the train steps can
scale them correctly under a distribution strategy."""
import tensorflow as tf


def aggregated_cross_entropy(logits, labels):
    """Cross entropy of the geometric-mean class score over several locations (Eq. 4, and Eq. 6's second line).

    Eq. 4 scores class k by prod_i P(k | X_i)^(1/n) and normalises over classes. Since log P(k | X_i) =
    z_ik - logsumexp(z_i), the per-location normaliser does not depend on k and cancels: the score is the
    softmax over k of mean_i z_ik. So the loss is sparse softmax cross entropy on the mean logits.

    Args:
        logits: (B, n, C) logits of n locations (all cells, or the T glimpses), or (B, C) already averaged.
        labels: (B,) int class indices.
    Returns:
        (B,) per-example losses.
    """
    if logits.shape.rank == 3:
        logits = tf.reduce_mean(logits, axis=1)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=logits)


def correct(logits, labels):
    """(B,) float32: 1 where the argmax of the logits is the label."""
    predicted = tf.math.argmax(logits, axis=-1, output_type=tf.int32)
    return tf.cast(tf.equal(predicted, tf.cast(labels, tf.int32)), tf.float32)


def location_targets(logits_map, num_glimpses):
    """Location-pretraining targets (Eq. 5): the cells of the *predicted* class's logits map, best first.

    Args:
        logits_map: (B, h, w, C).
        num_glimpses: T (12 in the paper).
    Returns:
        (B, T) int32 flat cell indices: target t is the cell with the t-th largest logit of the predicted class
        (predicted = argmax of the spatially averaged logits).
    """
    classes = logits_map.shape[-1]
    flat = tf.reshape(logits_map, (tf.shape(logits_map)[0], -1, classes))
    predicted = tf.math.argmax(tf.reduce_mean(flat, axis=1), axis=-1, output_type=tf.int32)
    class_map = tf.gather(flat, predicted, axis=2, batch_dims=1)  # (B, h*w)
    return tf.math.top_k(class_map, k=num_glimpses).indices


LOCATION_OBJECTIVES = ("mean", "sum")


def location_objective_scale(objective, num_glimpses):
    """Factor applied to the whole location-pretraining objective (Eq. 5: CE summed over T steps + penalty).

    ``"sum"`` (1) is Eq. 5 as written. ``"mean"`` (1 / T, the default) is Eq. 5 divided by T: the per-step cross
    entropy averaged over the T steps (what the authors' code computes) and the penalty nu / T. It has the same
    minimiser and the same relative weight of the penalty as Eq. 5; only the gradient is T times smaller, so one
    learning rate serves every T and every stage. With "sum", T = 12 and SGD at the other stages' rate 0.1 the
    step acts 12x larger and diverged on cluttered Fashion-MNIST (the location weights grew 370x in norm).
    """
    if objective not in LOCATION_OBJECTIVES:
        raise ValueError(f"location_objective must be one of {LOCATION_OBJECTIVES}, got {objective!r}.")
    return 1.0 / float(num_glimpses) if objective == "mean" else 1.0


def trajectory_log_prob(location_logits, locations):
    """Sum over steps of log pi(l_t | X, C_{t-1}): (B, T, n) masked logits and (B, T) cells -> (B,)."""
    log_policy = tf.nn.log_softmax(location_logits, axis=-1)
    chosen = tf.gather(log_policy, tf.cast(locations, tf.int32), axis=2, batch_dims=2)
    return tf.reduce_sum(chosen, axis=1)


def reinforce_loss(location_logits, locations, advantage):
    """REINFORCE for a discrete policy (Eq. 6, first line): -log pi(trajectory) * (r - b), per example.

    ``advantage`` (B,) is treated as a constant (no gradient flows through the reward or the baseline).
    """
    return -trajectory_log_prob(location_logits, locations) * tf.stop_gradient(advantage)


def l2_penalty(variables, reduction="sum"):
    """Weight penalty on the kernels among ``variables`` (tensors of rank >= 2 and the cell's attention vector).

    ``reduction="sum"``: 1/2 * sum of squares, the paper's (lambda / 2) * sum theta^2 (multiply by lambda
    outside). ``"mean"``: the mean squared weight, what the authors' code computes (with lambda = 8e-5).
    BatchNorm parameters and biases are not penalised.
    """
    kernels = [v for v in variables if len(v.shape) >= 2 or v.path.endswith("attention_vector")]
    if not kernels:
        return tf.constant(0.0)
    if reduction == "sum":
        return 0.5 * tf.add_n([tf.reduce_sum(tf.square(v)) for v in kernels])
    if reduction == "mean":
        total = tf.add_n([tf.reduce_sum(tf.square(v)) for v in kernels])
        return total / float(sum(int(v.shape.num_elements()) for v in kernels))
    raise ValueError(f"l2 reduction must be 'sum' (paper) or 'mean' (reference code), got {reduction!r}.")
