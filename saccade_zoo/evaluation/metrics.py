"""Accuracy vs glimpses, coverage and occlusion (Saccader paper Figs. 3-5).

A policy's trajectory for T glimpses is the prefix of its trajectory for more glimpses (the learned and
engineered policies are all greedy/ranked), so one pass with the largest T gives every T at once: the
prediction after t glimpses is the mean of the first t glimpse logits.
"""
import numpy as np

from saccade_zoo.layers.policies import POLICIES


def _predict(model, images, batch_size):
    out = model.predict(images, batch_size=batch_size, verbose=0)
    return {k: np.asarray(v) for k, v in out.items()}


def accuracy_vs_glimpses(step_logits, labels):
    """Top-1 accuracy after t = 1..T glimpses from (N, T, C) glimpse logits: (T,) array."""
    running = np.cumsum(step_logits, axis=1) / np.arange(1, step_logits.shape[1] + 1)[None, :, None]
    return (running.argmax(axis=-1) == np.asarray(labels)[:, None]).mean(axis=0)


def coverage_vs_glimpses(boxes, image_shape):
    """Mean fraction of the image covered by the union of the first t glimpse boxes, t = 1..T: (T,) array."""
    height, width = image_shape[:2]
    n, steps = boxes.shape[:2]
    covered = np.zeros((n, height, width), bool)
    result = np.zeros(steps)
    for t in range(steps):
        for i in range(n):
            y0, x0, y1, x1 = np.clip(boxes[i, t], 0, [height, width, height, width]).astype(int)
            covered[i, y0:y1, x0:x1] = True
        result[t] = covered.mean()
    return result


def occlude(images, boxes, value=0.0):
    """Images with every glimpse box set to ``value`` (paper section 4.2: occluded pixels set to 0)."""
    images = np.array(images, copy=True)
    height, width = images.shape[1:3]
    for i in range(images.shape[0]):
        for y0, x0, y1, x1 in np.clip(boxes[i], 0, [height, width, height, width]).astype(int):
            images[i, y0:y1, x0:x1] = value
    return images


def occlusion_accuracy(classify, images, labels, boxes, value=0.0):
    """Accuracy of ``classify`` (images -> logits) on images whose glimpse boxes are occluded."""
    logits = np.asarray(classify(occlude(images, boxes, value)))
    return float((logits.argmax(axis=-1) == np.asarray(labels)).mean())


def evaluate_policies(model, images, labels, max_glimpses=12, policies=POLICIES, batch_size=64, item_boxes=None,
                      seed=0):
    """Accuracy and coverage vs glimpses (1..max) for the learned policy and the engineered ones on the same
    backbone, plus the backbone's full-image accuracy (mean logits over all cells).

    Args:
        model: a Saccader (learned policy) or a PolicyClassifier/Saccader whose backbone the policies share.
        item_boxes: optional (N, K, 4) object boxes; adds the fraction of glimpses that hit an object.
    Returns:
        dict: {"full_image": acc, "policies": {name: {"accuracy": [...], "coverage": [...], "hit_rate": [...]}}}
    """
    from saccade_zoo.models.saccader.saccader import Saccader

    labels = np.asarray(labels)
    full = model.backbone.predict(images, batch_size=batch_size, verbose=0)["logits"]
    result = {"full_image": float((np.asarray(full).argmax(-1) == labels).mean()), "policies": {}}
    candidates = {}
    if isinstance(model, Saccader):
        candidates["learned"] = model.with_glimpses(max_glimpses)
    for policy in policies:
        candidates[policy] = model.with_policy(policy, num_glimpses=max_glimpses, seed=seed)
    for name, candidate in candidates.items():
        out = _predict(candidate, images, batch_size)
        entry = {"accuracy": accuracy_vs_glimpses(out["step_logits"], labels).tolist(),
                 "coverage": coverage_vs_glimpses(out["boxes"], images.shape[1:]).tolist()}
        if item_boxes is not None:
            from saccade_zoo.data.cluttered import glimpse_hits

            hits = glimpse_hits(out["boxes"], item_boxes).any(axis=-1)  # (N, T): glimpse t hit some object
            entry["hit_rate"] = hits.mean(axis=0).tolist()
        result["policies"][name] = entry
    return result


def format_accuracy_table(results, digits=3):
    """The accuracy-vs-glimpses table of `evaluate_policies` results as text (one row per glimpse count)."""
    names = list(results["policies"])
    steps = len(results["policies"][names[0]]["accuracy"]) if names else 0
    lines = ["glimpses  " + "  ".join(f"{n[:14]:>14}" for n in names)]
    for t in range(steps):
        lines.append(f"{t + 1:8d}  " + "  ".join(f"{results['policies'][n]['accuracy'][t]:14.{digits}f}" for n in names))
    lines.append(f"full image (all cells): {results['full_image']:.{digits}f}")
    return "\n".join(lines)
