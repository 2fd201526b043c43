"""Loss terms shared by the zoo's families, per example so that the train steps can scale them correctly under a
distribution strategy. A family's own terms live in its folder (the Saccader's location targets and REINFORCE in
`saccade_zoo.models.saccader.losses`).

Every classification term takes the model's output activation (its `OutputContract`): "softmax" (integer labels,
one class per image) or "sigmoid" (multi-hot labels, multi-label models such as two-item identification).
"""
import tensorflow as tf


def aggregated_cross_entropy(logits, labels, activation="softmax"):
    """Cross entropy of the geometric-mean class score over several locations (Saccader Eq. 4, Eq. 6's 2nd line).

    Eq. 4 scores class k by prod_i P(k | X_i)^(1/n) and normalises over classes. Since log P(k | X_i) =
    z_ik - logsumexp(z_i), the per-location normaliser does not depend on k and cancels: the score is the
    softmax over k of mean_i z_ik. So the loss is sparse softmax cross entropy on the mean logits.
    For a multi-label model ("sigmoid") it is the sigmoid cross entropy of the mean logits, summed over classes
    (each class an independent yes/no decision).

    Args:
        logits: (B, n, C) logits of n locations (all cells, or the T glimpses), or (B, C) already averaged.
        labels: (B,) int class indices ("softmax") or (B, C) multi-hot ("sigmoid").
    Returns:
        (B,) per-example losses.
    """
    if logits.shape.rank == 3:
        logits = tf.reduce_mean(logits, axis=1)
    if activation == "sigmoid":
        per_class = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(labels, logits.dtype), logits=logits)
        return tf.reduce_sum(per_class, axis=-1)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=logits)


def correct(logits, labels, activation="softmax"):
    """(B,) float32: 1 where the prediction is right: the argmax is the label ("softmax"), or every class's
    decision (logit > 0) matches the multi-hot label ("sigmoid": exact match)."""
    if activation == "sigmoid":
        return tf.reduce_min(label_decisions(logits, labels), axis=-1)
    predicted = tf.math.argmax(logits, axis=-1, output_type=tf.int32)
    return tf.cast(tf.equal(predicted, tf.cast(labels, tf.int32)), tf.float32)


def label_decisions(logits, labels):
    """(B, C) float32 of a multi-label model: 1 where the class's decision (logit > 0) matches the multi-hot label.
    Its mean over classes is the per-label accuracy; its minimum, the exact match (`correct`)."""
    return tf.cast(tf.equal(logits > 0, tf.cast(labels, tf.float32) > 0.5), tf.float32)


def penalised_kernels(variables, extra=()):
    """The weights the penalty sees: kernels (rank >= 2) among ``variables`` plus ``extra`` (e.g. the Saccader
    cell's attention vector). BatchNorm parameters and biases are not penalised."""
    chosen = [v for v in variables if len(v.shape) >= 2]
    ids = {id(v) for v in chosen}
    return chosen + [v for v in extra if id(v) not in ids]


def l2_penalty(variables, reduction="sum"):
    """Weight penalty on exactly ``variables`` (a model picks them with `penalised_kernels`).

    ``reduction="sum"``: 1/2 * sum of squares, the paper's (lambda / 2) * sum theta^2 (multiply by lambda
    outside). ``"mean"``: the mean squared weight, what the authors' code computes (with lambda = 8e-5).
    """
    variables = list(variables)
    if not variables:
        return tf.constant(0.0)
    if reduction == "sum":
        return 0.5 * tf.add_n([tf.reduce_sum(tf.square(v)) for v in variables])
    if reduction == "mean":
        total = tf.add_n([tf.reduce_sum(tf.square(v)) for v in variables])
        return total / float(sum(int(v.shape.num_elements()) for v in variables))
    raise ValueError(f"l2 reduction must be 'sum' (paper) or 'mean' (reference code), got {reduction!r}.")


def full_image_terms(model, images, labels, training):
    """The one stage of a full-image classifier (a BagNet's Eq. 4, a ConvNet): cross entropy of the model's
    ``logits`` (for a BagNet already the all-cells mean), every kernel penalised, accuracy as the statistic. In the
    dict form `StagedTrainingMixin` expects of ``_stage_terms``."""
    logits = model(images, training=training)["logits"]
    return {"per_example": {"ce": aggregated_cross_entropy(logits, labels, model.activation)},
            "penalised": penalised_kernels(model.trainable_variables),
            "stats": {"accuracy": correct(logits, labels, model.activation)}}
