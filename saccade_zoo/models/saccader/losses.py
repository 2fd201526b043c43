"""The Saccader's own loss terms (Elsayed et al. 2019): location-pretraining targets and the scale of Eq. 5, and
REINFORCE for its discrete glimpse policy (Eq. 6). Per example, like `saccade_zoo.training.losses`."""
import tensorflow as tf


LOCATION_TARGETS = ("max_logit", "predicted_class")


def location_targets(logits_map, num_glimpses, rule="predicted_class"):
    """Location-pretraining targets (Eq. 5): T cells of the BagNet's logits map, best first.

    Rules:
    - ``"max_logit"`` (default, the paper): cells sorted by their *largest logit over classes*. Section 3.2, after
      Eq. 5: "l_target^1 is the location with largest maximum logit, and l_target^361 is the location with the
      smallest maximum logit". A cell that is confident about any class is a target, whatever the image's label.
    - ``"predicted_class"`` (the authors' code): cells sorted by the logit of the image's *predicted* class (argmax
      of the spatially averaged logits).

    On a weak BagNet the paper's targets are the worse guide: a BagNet trained by Eq. 4 only scores the mean over
    cells, so single cells can carry extreme logits (on the reduced quick start's step-1 BagNet, 41% on the full
    image: cell maxima up to 130, 99th percentile 70), and the cell of largest maximum logit was right for 14.8% of
    images against 25.2% for the predicted class's best cell. The policy step after them once collapsed (the
    cross entropy at those cells retrained the BagNet with steps too large: full-image accuracy 41% -> 11%); the
    policy step now clips the global gradient norm at 1 (`Saccader.stages`), which fixed it (13.6% -> 38.0% at 6
    glimpses on that run). On the full data (BagNet at 80%) the paper's targets gave 70.8% and the
    authors' 58.1% (docs/results.md; that run's policy step partly collapsed, before the clipping).

    Args:
        logits_map: (B, h, w, C).
        num_glimpses: T (12 in the paper).
        rule: one of ``LOCATION_TARGETS``.
    Returns:
        (B, T) int32 flat cell indices, target t being the cell with the t-th largest score.
    """
    if rule not in LOCATION_TARGETS:
        raise ValueError(f"location_targets must be one of {LOCATION_TARGETS}, got {rule!r}.")
    classes = logits_map.shape[-1]
    flat = tf.reshape(tf.cast(logits_map, tf.float32), (tf.shape(logits_map)[0], -1, classes))
    if rule == "max_logit":
        scores = tf.reduce_max(flat, axis=-1)  # (B, h*w)
    else:
        predicted = tf.math.argmax(tf.reduce_mean(flat, axis=1), axis=-1, output_type=tf.int32)
        scores = tf.gather(flat, predicted, axis=2, batch_dims=1)  # (B, h*w)
    return tf.math.top_k(scores, k=num_glimpses).indices


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


