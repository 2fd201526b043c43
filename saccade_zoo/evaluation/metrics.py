"""Accuracy (top-1, top-k; exact match and per-label for multi-label models) vs glimpses, coverage and occlusion
(Saccader paper Figs. 3-5), and the test images a model gets right and wrong (for glimpse pictures).

A policy's trajectory for T glimpses is the prefix of its trajectory for more glimpses (the learned and
engineered policies are all greedy/ranked, the recurrent ones causal), so one pass with the largest T gives every
T at once: the prediction after t glimpses is the mean of the first t glimpse logits (step t's own logits for a
recurrent model: the contract's aggregation), and the boxes of the first t glimpses are the boxes of a t-glimpse
run (occlusion reuses them).

Occlusion happens in pixel space (paper section 4.2, "occluded pixels set to 0"): an occluded pixel is black,
0 on [0, 1] pixels. A model sees standardised pixels, ``(pixel - mean) / std`` with its preset's mean/std
(`saccade_zoo.preprocess`), so in *model-ready* images a black pixel is ``(0 - mean) / std`` per channel, not 0
(the same thing only for mean 0, std 1). `occlude` takes the preprocessing of the images it is given and writes
that value (`black_value`); raw [0, 1] pixels are occluded with ``preprocessing=None`` (0) and standardised after
(`standardise`): both orders give the same images.
"""
from collections.abc import Mapping

import numpy as np

from saccade_zoo.data.inputs import image_array, num_examples, predict_in_batches, take_examples
from saccade_zoo.contract import SIGMOID, OutputContract
from saccade_zoo.models.saccader.policies import POLICIES


def _predict(model, images, batch_size):
    return predict_in_batches(model, images, batch_size)


def _scores_after_each_glimpse(step_logits, contract=None):
    """(N, T, C) float64: the class scores after t glimpses, t = 1..T, as the contract aggregates them (default:
    the mean of the first t glimpse logits; a recurrent model's step logits as they are)."""
    return (contract or OutputContract(1)).cumulative_logits(step_logits)


def accuracy_vs_glimpses(step_logits, labels, contract=None):
    """(T,) accuracy after 1..T glimpses: the prediction after t glimpses is the mean of the first t glimpse
    logits (the step's own logits for a recurrent model, whose contract's aggregation is "last"); "correct" is
    what the model's contract says (top-1, or the exact match of every label for a multi-label model; default:
    top-1)."""
    running = _scores_after_each_glimpse(step_logits, contract)
    labels = np.asarray(labels)
    if contract is None or not contract.multi_label:
        return (running.argmax(axis=-1) == labels[:, None]).mean(axis=0)
    return np.stack([contract.correct(running[:, t], labels) for t in range(running.shape[1])], axis=1).mean(axis=0)


def label_accuracy_vs_glimpses(step_logits, labels, contract=None):
    """(T,) per-label accuracy of a multi-label model after 1..T glimpses: the fraction of the (image, class)
    decisions that are right, each class predicted present when the mean of the first t glimpse logits is > 0
    (`OutputContract.label_accuracy`). Unlike the exact match (`accuracy_vs_glimpses`), an image with one of its
    labels wrong still counts its right ones.

    Args:
        step_logits: (N, T, C) glimpse logits.
        labels: (N, C) multi-hot labels.
        contract: the model's contract (default: a multi-label one); a single-label contract is a ValueError.
    """
    if contract is None:
        contract = OutputContract(np.shape(step_logits)[-1], activation=SIGMOID)
    running = _scores_after_each_glimpse(step_logits, contract)
    labels = np.asarray(labels)
    if not contract.multi_label:
        raise ValueError("per-label accuracy is for multi-label (sigmoid) models: a single-label model has one "
                         "label per image (use accuracy_vs_glimpses).")
    if labels.shape != (running.shape[0], running.shape[-1]):
        raise ValueError(f"per-label accuracy needs (N, C) multi-hot labels for step logits {running.shape}, got "
                         f"labels of shape {labels.shape}.")
    return np.array([contract.label_accuracy(running[:, t], labels) for t in range(running.shape[1])])


def top_k_correct(logits, labels, k):
    """(...,) bool: the label is among the ``k`` highest of ``logits`` (..., C) (single-label models only).

    Ties are broken towards the lower class index, as ``argmax`` does, so ``k=1`` is exactly top-1: a class ranks
    ahead of the label when its score is higher, or equal with a lower index.
    """
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels).astype(np.int64)
    if labels.shape != logits.shape[:-1]:
        raise ValueError(f"top-k needs one integer label per row of logits {logits.shape}, got labels of shape "
                         f"{labels.shape} (multi-hot labels: top-k is not defined for multi-label models).")
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    own = np.take_along_axis(logits, labels[..., None], axis=-1)
    ahead = (logits > own) | ((logits == own) & (np.arange(logits.shape[-1]) < labels[..., None]))
    return ahead.sum(axis=-1) < int(k)


def top_k_accuracy_vs_glimpses(step_logits, labels, k=5, contract=None):
    """(T,) top-``k`` accuracy after 1..T glimpses (the mean of the first t glimpse logits ranks the classes; ties
    as in `top_k_correct`). Defined for single-label (softmax) models only: a multi-label ``contract`` is a
    ValueError."""
    if contract is not None and contract.multi_label:
        raise ValueError("top-k accuracy is not defined for a multi-label (sigmoid) model.")
    running = _scores_after_each_glimpse(step_logits, contract)
    labels = np.asarray(labels)
    return top_k_correct(running, np.broadcast_to(labels[:, None], running.shape[:2]), k).mean(axis=0)


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


def black_value(preprocessing, channels=None):
    """The value of a black pixel (0 on [0, 1] pixels) in images standardised with ``preprocessing``: float32
    ``(0 - mean) / std`` per channel, computed as `saccade_zoo.preprocess` computes it (so equal to the bit).

    Args:
        preprocessing: a dict with ``mean`` and ``std`` (on [0, 1] pixels; a model's ``preprocessing``), a model
            (its ``preprocessing``) or None (raw [0, 1] pixels, or a model without preprocessing: 0).
        channels: broadcast the result to this many channels (default: as many as mean/std have).
    """
    if preprocessing is not None and not isinstance(preprocessing, Mapping):
        preprocessing = getattr(preprocessing, "preprocessing", None)
    if preprocessing is None:
        value = np.zeros(1, np.float32)
    else:
        mean = np.ravel(np.asarray(preprocessing["mean"], np.float32))
        std = np.ravel(np.asarray(preprocessing["std"], np.float32))
        value = (np.zeros(1, np.float32) - mean) / std
    return np.broadcast_to(value, (int(channels),)).copy() if channels is not None else value


def standardise(pixels, preprocessing):
    """[0, 1] (or uint8) pixels -> model-ready float32 images with ``preprocessing`` (a dict, a model or a preset
    name, as `saccade_zoo.preprocess`); None leaves the pixels as they are (mean 0, std 1: what a model built
    without a preset, and the cluttered presets, take)."""
    from saccade_zoo.registry import preprocess

    if preprocessing is not None and not isinstance(preprocessing, (Mapping, str)):
        preprocessing = getattr(preprocessing, "preprocessing", None)
    if preprocessing is None:
        pixels = np.asarray(pixels)
        return pixels.astype("float32") / 255.0 if pixels.dtype == np.uint8 else pixels.astype("float32")
    return preprocess(pixels, preprocessing)


def occlude(images, boxes, *, preprocessing=None, value=None):
    """A copy of ``images`` with every glimpse box black (paper section 4.2: occluded pixels set to 0).

    Args:
        images: (N, H, W, C) images standardised with ``preprocessing`` (model-ready), or raw [0, 1] pixels with
            ``preprocessing=None``.
        boxes: (N, T, 4) pixel boxes (y0, x0, y1, x1), half-open; every one of the T boxes is occluded.
        preprocessing: the mean/std the images were standardised with (a dict or a model): occluded pixels get
            `black_value` (0 - mean) / std per channel, i.e. black in pixel space. None: 0.
        value: an explicit occlusion value (scalar or per channel) instead of black; not with ``preprocessing``.
    """
    if value is not None and preprocessing is not None:
        raise ValueError("occlude: pass preprocessing (occlude with black) or value (occlude with that), not both.")
    images = np.array(images, copy=True)
    fill = black_value(preprocessing) if value is None else np.asarray(value, images.dtype)
    fill = np.broadcast_to(fill, images.shape[-1:]).astype(images.dtype)
    height, width = images.shape[1:3]
    for i in range(images.shape[0]):
        for y0, x0, y1, x1 in np.clip(boxes[i], 0, [height, width, height, width]).astype(int):
            images[i, y0:y1, x0:x1] = fill
    return images


def occlusion_accuracy(classify, images, labels, boxes, *, preprocessing=None, value=None, contract=None):
    """Accuracy of ``classify`` (model-ready images -> logits) on ``images`` whose glimpse boxes are black.

    ``images`` are in the classifier's own standardisation, ``preprocessing`` its mean/std (occluded pixels become
    (0 - mean) / std: see `occlude`, which also explains ``value``). ``contract``: the classifier's output
    contract ("correct" is top-1, or the exact match of every label for a multi-label model; default: top-1).
    """
    logits = np.asarray(classify(occlude(images, boxes, preprocessing=preprocessing, value=value)))
    if contract is not None:
        return float(contract.correct(logits, labels).mean())
    return float((logits.argmax(axis=-1) == np.asarray(labels)).mean())


def top_k_note(contract, k):
    """Why top-``k`` is not reported for a model with this contract, or None when it is (single-label, more than
    ``k`` classes)."""
    if contract.multi_label:
        return f"top-{k} is not defined for a multi-label (sigmoid) model: accuracy is the exact match of every label"
    if contract.num_classes <= k:
        return f"top-{k} is always 1 with {contract.num_classes} classes"
    return None


def evaluate_policies(model, images, labels, max_glimpses=12, policies=POLICIES, batch_size=64, item_boxes=None,
                      seed=0, top_k=None, backbone_label="final backbone", label_columns=False, box_glimpses=None,
                      return_boxes=False):
    """Accuracy and coverage vs glimpses (1..max) for a model's learned policy and the engineered ones on the same
    backbone, plus the backbone's full-image accuracy (mean logits over all cells).

    Every candidate is run once (with max(max_glimpses, box_glimpses) glimpses); its boxes give the coverage, the
    hit rate and, with ``return_boxes``, the occlusion test's boxes (a T-glimpse run's boxes are the first T).

    Args:
        model: a Saccader (learned policy + engineered ones on its BagNet), a PolicyClassifier (engineered policies
            on its BagNet), a bare BagNet (engineered policies on it: the paper's baselines use the step-1 network),
            any other `GlimpseModel` (its own policy only; ``full_image`` is None) or another full-image classifier
            (a zoo model without glimpses, e.g. a ConvNet: ``full_image`` only, no policies).
        images: (N, H, W, C) images ready for ``model`` (standardised with its preprocessing), or a dict of input
            arrays for a model with several inputs (``{"images", "proxy"}``, `saccade_zoo.data.inputs`).
        item_boxes: optional (N, K, 4) object boxes; adds the fraction of glimpses that hit an object.
        top_k: also report top-``k`` accuracy vs glimpses (``"top<k>"`` in each entry, ``"full_image_top<k>"``)
            when the model is single-label with more than k classes; ``"top_k"`` in the result says whether.
        backbone_label: the name of the backbone the policies run on, stored in every entry (``"backbone"``).
        label_columns: name the engineered policies' columns "<policy> (<backbone_label>)" instead of "<policy>",
            so that the results on two backbones can be merged side by side ("learned" keeps its name).
        box_glimpses: glimpses the returned boxes must cover, when more than ``max_glimpses``.
        return_boxes: also return ``{column: (N, T, 4) boxes}``.
    Returns:
        dict: {"full_image": acc or None, "backbone": backbone_label, "policies": {column: {"policy": name,
        "backbone": backbone_label, "accuracy": [...], "coverage": [...], "hit_rate": [...], "top5": [...]}}}
        (and ``(result, boxes)`` with ``return_boxes``). Accuracy follows the model's contract (exact match for
        multi-label models); a multi-label model's entries also have ``"label_accuracy"`` (per-label accuracy vs
        glimpses, `label_accuracy_vs_glimpses`) and the result ``"full_image_label_accuracy"`` (when there is a
        full-image classifier).
    """
    from saccade_zoo.models.bagnet.backbone import BagNet
    from saccade_zoo.models.saccader.saccader import BagNetGlimpseModel, PolicyClassifier

    labels = np.asarray(labels)
    contract = model.contract
    steps = max(int(max_glimpses), int(box_glimpses or 0))
    candidates = {}
    host = full_model = None  # the model whose with_policy runs the engineered policies, the full-image classifier
    if isinstance(model, BagNet):
        full_model = model
        host = PolicyClassifier(model, policy=policies[0] if policies else "center", num_glimpses=steps,
                                metadata=model.metadata)
    elif contract.has_glimpses:
        if isinstance(model, BagNetGlimpseModel):
            host, full_model = model, model.backbone
        if not isinstance(model, PolicyClassifier):
            candidates["learned"] = ("learned", model.with_glimpses(steps))
    else:
        full_model = model  # another full-image classifier (a ConvNet, ...): no cells to read, its accuracy only
    note = top_k_note(contract, top_k) if top_k else None
    result = {"full_image": None, "backbone": backbone_label, "policies": {}}
    if top_k:
        result["top_k"] = {"k": int(top_k), "reported": note is None, **({"reason": note} if note else {})}
    if full_model is not None:
        full = np.asarray(_predict(full_model, images, batch_size)["logits"])
        result["full_image"] = float(contract.correct(full, labels).mean())
        if contract.multi_label:
            result["full_image_label_accuracy"] = contract.label_accuracy(full, labels)
        if top_k and note is None:
            result[f"full_image_top{top_k}"] = float(top_k_correct(full, labels, top_k).mean())
    if host is not None:
        for policy in policies:
            column = f"{policy} ({backbone_label})" if label_columns else policy
            candidates[column] = (policy, host.with_policy(policy, num_glimpses=steps, seed=seed))
    boxes = {}
    for column, (policy, candidate) in candidates.items():
        out = _predict(candidate, images, batch_size)
        step_logits, glimpse_boxes = out["step_logits"][:, :max_glimpses], out["boxes"][:, :max_glimpses]
        entry = {"policy": policy, "backbone": backbone_label,
                 "accuracy": accuracy_vs_glimpses(step_logits, labels, contract).tolist(),
                 "coverage": coverage_vs_glimpses(glimpse_boxes, image_array(images).shape[1:]).tolist()}
        if contract.multi_label:
            entry["label_accuracy"] = label_accuracy_vs_glimpses(step_logits, labels, contract).tolist()
        if top_k and note is None:
            entry[f"top{top_k}"] = top_k_accuracy_vs_glimpses(step_logits, labels, top_k, contract).tolist()
        if item_boxes is not None:
            from saccade_zoo.data.cluttered import glimpse_hits

            hits = glimpse_hits(glimpse_boxes, item_boxes).any(axis=-1)  # (N, T): glimpse t hit some object
            entry["hit_rate"] = hits.mean(axis=0).tolist()
        result["policies"][column] = entry
        boxes[column] = out["boxes"]
    return (result, boxes) if return_boxes else result


def format_accuracy_table(results, digits=3, metric="accuracy"):
    """A per-glimpse table of `evaluate_policies` results as text (one row per glimpse count, one column per policy
    and backbone): ``metric`` "accuracy" (top-1 / exact match), "label_accuracy" (per-label, multi-label models),
    "top5", "coverage" or "hit_rate". Full-image
    accuracies follow (``results["policy_backbone"]``'s too, when tools/evaluate.py added one)."""
    names = [n for n, entry in results["policies"].items() if metric in entry]
    steps = len(results["policies"][names[0]][metric]) if names else 0
    widths = [max(len(n), digits + 3, 8) for n in names]
    lines = ["glimpses  " + "  ".join(f"{n:>{w}}" for n, w in zip(names, widths))]
    for t in range(steps):
        lines.append(f"{t + 1:8d}  " + "  ".join(f"{results['policies'][n][metric][t]:{w}.{digits}f}"
                                                 for n, w in zip(names, widths)))
    key = "full_image" if metric == "accuracy" else f"full_image_{metric}"
    extra = results.get("policy_backbone")
    rows = [(results.get(key), results.get("backbone"))] + ([(extra.get(key), extra.get("label"))] if extra else [])
    for value, label in rows:
        if value is not None:
            suffix = f", {label}" if extra and label else ""
            # "all cells": a BagNet's full-image score is its mean logits over the cells (a plain CNN has none)
            what = f"all cells{suffix}" if names else suffix.lstrip(", ")
            lines.append(f"full image{f' ({what})' if what else ''}: {value:.{digits}f}")
    return "\n".join(lines)


def right_and_wrong(model, images, labels, count=8, batch_size=64):
    """Up to ``count`` images that ``model`` (a glimpse model, with the number of glimpses it was built with)
    classifies right and up to ``count`` it classifies wrong, the first ones in the order of ``images``: the glimpse
    pictures' examples. "Right" is what the model's contract says (top-1, or the exact match of every label for a
    multi-label model). Batches are read only until both are full.

    Args:
        model: a glimpse model (outputs ``logits`` and ``boxes``).
        images: (N, H, W, C) images ready for ``model`` (standardised with its preprocessing), or a dict of input
            arrays (``{"images", "proxy"}``).
        labels: (N,) integer labels or (N, C) multi-hot labels.
    Returns:
        {"right": {...}, "wrong": {...}}, each with ``index`` (n,) positions in ``images``, ``boxes`` (n, T, 4)
        pixel boxes (in glimpse order), ``predictions`` (n,) classes or (n, C) multi-hot vectors and ``labels``;
        n <= ``count``, 0 when there is none.
    """
    contract = model.contract
    if not contract.has_glimpses:
        raise ValueError(f"right_and_wrong needs a glimpse model (boxes); {type(model).__name__} has none.")
    labels = np.asarray(labels)
    found = {"right": [], "wrong": []}  # [(index, boxes, prediction)]
    total = num_examples(images)
    for start in range(0, total, int(batch_size)):
        if all(len(v) >= count for v in found.values()):
            break
        stop = min(start + int(batch_size), total)
        out = model.predict(take_examples(images, slice(start, stop)), batch_size=int(batch_size), verbose=0)
        logits, boxes = np.asarray(out["logits"]), np.asarray(out["boxes"])
        predictions = contract.predictions(logits)
        for i, ok in enumerate(contract.correct(logits, labels[start:stop])):
            kind = found["right" if ok else "wrong"]
            if len(kind) < count:
                kind.append((start + i, boxes[i], predictions[i]))
    result = {}
    for kind, rows in found.items():
        index = np.array([r[0] for r in rows], np.int64)
        steps, c = int(contract.num_glimpses), int(contract.num_classes)
        result[kind] = {
            "index": index, "labels": labels[index],
            "boxes": np.stack([r[1] for r in rows]) if rows else np.zeros((0, steps, 4), np.float32),
            "predictions": (np.stack([r[2] for r in rows]) if rows
                            else np.zeros((0, c) if contract.multi_label else (0,), np.int64))}
    return result
