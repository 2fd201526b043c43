"""Accuracy vs glimpses, coverage and occlusion (Saccader paper Figs. 3-5).

A policy's trajectory for T glimpses is the prefix of its trajectory for more glimpses (the learned and
engineered policies are all greedy/ranked), so one pass with the largest T gives every T at once: the
prediction after t glimpses is the mean of the first t glimpse logits.
"""
import numpy as np

from saccade_zoo.models.saccader.policies import POLICIES


def _predict(model, images, batch_size):
    out = model.predict(images, batch_size=batch_size, verbose=0)
    return {k: np.asarray(v) for k, v in out.items()}


def accuracy_vs_glimpses(step_logits, labels, contract=None):
    """(T,) accuracy after 1..T glimpses: the prediction after t glimpses is the mean of the first t glimpse
    logits; "correct" is what the model's contract says (top-1, or the exact match of every label for a
    multi-label model; default: top-1)."""
    running = np.cumsum(np.asarray(step_logits, np.float64), axis=1) / np.arange(1, step_logits.shape[1] + 1)[:, None]
    labels = np.asarray(labels)
    if contract is None or not contract.multi_label:
        return (running.argmax(axis=-1) == labels[:, None]).mean(axis=0)
    return np.stack([contract.correct(running[:, t], labels) for t in range(running.shape[1])], axis=1).mean(axis=0)


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


def occlusion_accuracy(classify, images, labels, boxes, value=0.0, contract=None):
    """Accuracy of ``classify`` (images -> logits) on images whose glimpse boxes are occluded."""
    logits = np.asarray(classify(occlude(images, boxes, value)))
    if contract is not None:
        return float(contract.correct(logits, labels).mean())
    return float((logits.argmax(axis=-1) == np.asarray(labels)).mean())


def evaluate_policies(model, images, labels, max_glimpses=12, policies=POLICIES, batch_size=64, item_boxes=None,
                      seed=0):
    """Accuracy and coverage vs glimpses (1..max) for a model's learned policy and the engineered ones on the same
    backbone, plus the backbone's full-image accuracy (mean logits over all cells).

    Args:
        model: a Saccader (learned policy + engineered ones on its BagNet), a PolicyClassifier (engineered policies
            on its BagNet), a bare BagNet (engineered policies on it: the paper's baselines use the step-1 network)
            or any other `GlimpseModel` (its own policy only; ``full_image`` is None).
        item_boxes: optional (N, K, 4) object boxes; adds the fraction of glimpses that hit an object.
    Returns:
        dict: {"full_image": acc or None, "policies": {name: {"accuracy": [...], "coverage": [...],
        "hit_rate": [...]}}}. Accuracy follows the model's contract (exact match for multi-label models).
    """
    from saccade_zoo.models.bagnet.backbone import BagNet
    from saccade_zoo.models.saccader.saccader import BagNetGlimpseModel, PolicyClassifier

    labels = np.asarray(labels)
    contract = model.contract
    candidates = {}
    if isinstance(model, BagNet):
        backbone = model
        model = PolicyClassifier(backbone, policy=policies[0] if policies else "center", num_glimpses=max_glimpses,
                                 metadata=backbone.metadata)
    else:
        backbone = getattr(model, "backbone", None) if isinstance(model, BagNetGlimpseModel) else None
        if not isinstance(model, PolicyClassifier):
            candidates["learned"] = model.with_glimpses(max_glimpses)
    full_image = None
    if backbone is not None:
        full = np.asarray(backbone.predict(images, batch_size=batch_size, verbose=0)["logits"])
        full_image = float(contract.correct(full, labels).mean())
        for policy in policies:
            candidates[policy] = model.with_policy(policy, num_glimpses=max_glimpses, seed=seed)
    result = {"full_image": full_image, "policies": {}}
    for name, candidate in candidates.items():
        out = _predict(candidate, images, batch_size)
        entry = {"accuracy": accuracy_vs_glimpses(out["step_logits"], labels, contract).tolist(),
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
    if results.get("full_image") is not None:
        lines.append(f"full image (all cells): {results['full_image']:.{digits}f}")
    return "\n".join(lines)
