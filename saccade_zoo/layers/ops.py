"""Tensor helpers shared by the zoo's layers: one-hot, argmax and the visited-cell mask.

Each is written with the ops that convert to TFLite built-ins and quantize correctly (see the docstrings), and
each works in any float dtype (float32, float16, bfloat16).
"""
import tensorflow as tf
from keras import ops

# A visited cell's score is set to the lowest score of its row minus MASK_MARGIN (see `mask_visited`).
# 32 is exactly representable in float16 and bfloat16, far inside float16's range (max 65504): unlike the
# paper's -10^5 (beyond float16's range: it would become -inf), it cannot overflow under mixed precision.
MASK_MARGIN = 32.0


def argmax_last(x):
    """Argmax over the last axis as int32.

    Written with `tf.math.argmax` on purpose: `keras.ops.argmax` on floats emits a BitwiseAnd that
    TFLite's built-in op set lacks, while `tf.math.argmax` converts to the built-in ARG_MAX.
    """
    return tf.math.argmax(x, axis=-1, output_type=tf.int32)


def one_hot(indices, depth, dtype="float32"):
    """One-hot encoding written as ``cast(indices[..., None] == arange(depth))``.

    Same values as `keras.ops.one_hot`, but TFLite's full-int8 quantizer mis-quantizes the ONE_HOT op's
    off_value (the zeros come out as 0.5 after quantization), which corrupted the glimpse state and readout
    of int8 exports; EQUAL + CAST quantize correctly.
    """
    positions = ops.arange(int(depth), dtype="int32")
    return ops.cast(ops.equal(ops.expand_dims(ops.cast(indices, "int32"), -1), positions), dtype)


def mask_visited(scores, visited):
    """Scores (B, N) with the visited cells (bool (B, N)) pushed below every other cell.

    The paper subtracts 10^5 C (Eqs. 1 and 3). Here a visited cell's score becomes ``min_n(scores) - 32``.
    In float the two agree to within float32 rounding: in each softmax a masked cell gets weight <= e^-32
    (~1e-14) instead of 0, and no argmax changes, Gumbel-max draws included (the Gumbel noise of
    `saccade_zoo.training.sampling` spans less than 19, so a masked cell can never win).

    Why deviate: an int8 tensor has one scale for all its values. A tensor holding -10^5 gets a step of about
    800, so every unvisited cell rounds to the same value and a full-int8 TFLite export cannot tell free cells
    apart from the second glimpse on (top-1 agreement with Keras fell to 0.36 on a trained model, 0 % identical
    trajectories). The masked tensor here spans only 32 more than the scores themselves.

    Computed in the dtype of ``scores``. The margin is exact in float32; in bfloat16 (8-bit mantissa) the
    rounding step of scores beyond ~512 in magnitude is >= 4, which eats into the margin, so `SaccaderCell`
    masks in float32 whatever its compute dtype.
    """
    floor = ops.min(scores, axis=-1, keepdims=True) - MASK_MARGIN
    return ops.where(visited, floor, scores)
