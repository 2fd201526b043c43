"""Parity of exported artifacts against the Keras model, on real images.

Gates (the export fails with `ParityError` when one is missed):

=================== ==========================================================================================
variant             gate
=================== ==========================================================================================
savedmodel, float32 max |logits - keras logits| <= 1e-4 * max(1, max |keras logits|) (``relative_max_abs_logits``)
                    and identical glimpse locations on every image
float16             max |logits - keras logits| <= 1e-3 * max(1, max |keras logits|) (``relative_max_abs_logits``,
                    over the images whose glimpse trajectory equals Keras's), top-1 agreement >= 99 % and
                    identical glimpse trajectories on >= 98 % of images
dynamic, int8       top-1 accuracy (exact match for multi-label models) on >= 1000 held-out *labelled* real images
                    within 1.0 point of the Keras model's on the same images (``accuracy_drop`` <= 0.01)
=================== ==========================================================================================

Why these. float32 reorders sums (another kernel, XNNPACK): its error is relative to the logits' scale, so logits
of +-30 (a trained variational saccader) may differ by 1.2e-4 while a 1e-4 bound holds for logits up to 1, which is
what the bound was written for. float16 weights alone move logits of +-55 by about 0.03, so an absolute bound
cannot hold for a trained model; a bound relative to the logits' scale can. It is taken over the images whose trajectory is Keras's: where a
near-tie in the location logits sends one glimpse elsewhere (the up to 2 % the trajectory gate allows), the model
reads other pixels and its logits differ by whole units, which says nothing about rounding. Quantised models are gated on *accuracy*, not on agreement with
Keras: on images where the Keras model's top two logits are nearly tied (its uncertain, often wrong, predictions)
8-bit rounding flips the argmax either way, so agreement measures how many near-ties a data set holds, not whether
the export is worse. Top-1 and trajectory agreement are still measured and recorded for every variant.

**Closed-loop models** (RAM, DRAM: the contract's ``closed_loop``, where the next glimpse depends on what the last
one saw) amplify rounding: on the shipped RAM, 1e-6 of Gaussian noise on the input pixels moves the 8th glimpse of
13% of images by more than 0.05 px in Keras itself (up to 20 px), so "identical glimpses on every image" cannot hold
for any other kernel. The export measures that *noise floor* (Keras against Keras on the same images plus
``NOISE_FLOOR_STD`` of pixel noise, recorded in the manifest) and gates such a model against it
(`closed_loop_gates`): SavedModel and float32 must keep at least the floor's share of identical trajectories (minus
``CLOSED_LOOP_MARGIN``) with logits no further off than twice the floor's, and every variant keeps the accuracy gate
(float16 included: its rounding is far above the floor, so it is gated like the quantised variants).

A model whose classes the exporter has no labelled images for (e.g. a 1001-class ImageNet preset, offline) cannot be
gated on accuracy: its dynamic and int8 variants fall back to top-1 agreement >= 95 % (`AGREEMENT_FALLBACK`), and
the manifest says which gate applied.
"""
import numpy as np

THRESHOLDS = {
    "savedmodel": {"relative_max_abs_logits": 1e-4, "location_agreement": 1.0},
    "float32": {"relative_max_abs_logits": 1e-4, "location_agreement": 1.0},
    "float16": {"relative_max_abs_logits": 1e-3, "top1_agreement": 0.99, "location_agreement": 0.98},
    "dynamic": {"accuracy_drop": 0.01},
    "int8": {"accuracy_drop": 0.01},
}
# The quantised variants: gated on accuracy with labelled images, else on agreement (AGREEMENT_FALLBACK).
QUANTISED_VARIANTS = ("dynamic", "int8")
AGREEMENT_FALLBACK = {variant: {"top1_agreement": 0.95} for variant in QUANTISED_VARIANTS}
# Continuous glimpse centres (spatial transformers, RAM, DRAM) count as the same location within this many pixels:
# a twentieth of a pixel moves a bilinear glimpse by at most 5% of one pixel step.
CONTINUOUS_LOCATION_TOLERANCE = 0.05
# Closed-loop models: the input noise of the Keras noise floor (pixels on [0, 1]) and the margin on its trajectory share.
NOISE_FLOOR_STD = 1e-6
CLOSED_LOOP_MARGIN = 0.02
# The accuracy gate needs this many labelled images: on fewer, 1 point is within sampling noise of a tie flip.
MIN_LABELLED_IMAGES = 1000
# Keys where larger is worse (the rest are agreements / accuracies: smaller is worse).
_UPPER_BOUNDS = ("max_abs_logits", "relative_max_abs_logits", "accuracy_drop")


class ParityError(AssertionError):
    """An exported variant disagrees with the Keras model beyond its threshold."""


def _predictions(logits, contract):
    if contract is not None:
        return contract.predictions(logits)
    return np.argmax(logits, -1)


def compare_outputs(reference, candidate, labels=None, contract=None):
    """Parity numbers of one candidate's outputs against the Keras reference outputs (dicts of arrays).

    ``labels`` (optional, one per image, in the model's label format) adds ``accuracy`` (the candidate's),
    ``keras_accuracy`` and ``accuracy_drop`` = |keras_accuracy - accuracy|. ``max_abs_logits`` is over every image,
    ``relative_max_abs_logits`` (divided by max(1, max |Keras logits|)) over the images whose glimpse locations
    equal Keras's (all images for a model without glimpses). Grid locations agree when they are the same cell,
    continuous ones (pixel centres) when within ``CONTINUOUS_LOCATION_TOLERANCE`` pixels (their largest difference is
    ``max_abs_locations_px``). ``contract`` (the model's
    `OutputContract`) decides what a prediction is: argmax (softmax) or the multi-hot logit > 0 (sigmoid); without
    it, argmax. ``top1_agreement`` is the share of images whose prediction equals Keras's.
    """
    ref_logits = np.asarray(reference["logits"], "float64")
    logits = np.asarray(candidate["logits"], "float64")
    if logits.shape != ref_logits.shape:
        raise ParityError(f"logits shape {logits.shape} differs from Keras {ref_logits.shape}.")
    error = np.abs(logits - ref_logits).reshape(len(ref_logits), -1).max(axis=1) if logits.size else np.zeros(0)
    max_abs = float(error.max()) if error.size else 0.0
    scale = max(1.0, float(np.max(np.abs(ref_logits)))) if logits.size else 1.0
    has_locations = "locations" in reference and "locations" in candidate
    same_trajectory = np.ones(len(ref_logits), bool)
    if has_locations:
        ref_locations, locations = np.asarray(reference["locations"]), np.asarray(candidate["locations"])
        if np.issubdtype(ref_locations.dtype, np.integer):  # grid cells: the same cell
            same_glimpse = locations == ref_locations
        else:  # continuous centres in pixels: within CONTINUOUS_LOCATION_TOLERANCE pixels
            location_error = np.abs(locations.astype("float64") - ref_locations)
            same_glimpse = location_error <= CONTINUOUS_LOCATION_TOLERANCE
        same_trajectory = same_glimpse.reshape(len(ref_logits), -1).all(axis=1)
    relative = float(error[same_trajectory].max()) / scale if same_trajectory.any() else 0.0
    same = _predictions(logits, contract) == _predictions(ref_logits, contract)
    if same.ndim > 1:
        same = same.all(axis=-1)
    result = {
        "num_images": int(len(ref_logits)),
        "max_abs_logits": max_abs,
        "relative_max_abs_logits": relative,  # over the images whose glimpse trajectory is Keras's
        "top1_agreement": float(np.mean(same)),
    }
    if has_locations:
        result["location_agreement"] = float(np.mean(same_trajectory))
        result["glimpse_location_agreement"] = float(np.mean(same_glimpse.all(axis=-1)))
        if not np.issubdtype(ref_locations.dtype, np.integer):
            result["max_abs_locations_px"] = float(location_error.max()) if location_error.size else 0.0
    if labels is not None:
        labels = np.asarray(labels)
        if len(labels) != len(ref_logits):
            raise ParityError(f"{len(labels)} labels for {len(ref_logits)} parity images.")
        accuracy = float(np.mean(_correct(logits, labels, contract)))
        keras_accuracy = float(np.mean(_correct(ref_logits, labels, contract)))
        result.update(accuracy=accuracy, keras_accuracy=keras_accuracy,
                      accuracy_drop=abs(keras_accuracy - accuracy), num_labelled_images=int(len(labels)))
    return result


def _correct(logits, labels, contract):
    if contract is not None:
        return contract.correct(logits, labels)
    return np.argmax(logits, -1) == labels


def gates(variant, labelled, thresholds=None):
    """The thresholds that apply to ``variant``: the accuracy gate for quantised variants when labelled images are
    available (``labelled``), else `AGREEMENT_FALLBACK`. ``thresholds`` (optional) overrides per variant."""
    if thresholds is not None and variant in thresholds:
        return dict(thresholds[variant])
    if not labelled and variant in AGREEMENT_FALLBACK:
        return dict(AGREEMENT_FALLBACK[variant])
    return dict(THRESHOLDS[variant])


def closed_loop_gates(variant, labelled, floor, thresholds=None):
    """The gates of a closed-loop model's ``variant`` given the Keras noise floor (`compare_outputs` of Keras on
    perturbed images against Keras): see the module docstring. ``thresholds`` (optional) overrides per variant."""
    if thresholds is not None and variant in thresholds:
        return dict(thresholds[variant])
    accuracy = gates("int8", labelled)  # the quantised variants' gate: accuracy, or agreement without labels
    if variant in ("savedmodel", "float32"):
        limits = {"location_agreement": max(0.0, floor.get("location_agreement", 1.0) - CLOSED_LOOP_MARGIN),
                  "relative_max_abs_logits": max(THRESHOLDS[variant]["relative_max_abs_logits"],
                                                 2.0 * floor.get("relative_max_abs_logits", 0.0))}
        return {**limits, **(accuracy if labelled else {})}
    return accuracy


def check(variant, metrics, limits):
    """Raise `ParityError` naming the variant and the measured number when one of ``limits`` is missed.

    A gate whose number was not measured (e.g. locations of a full-image model) is skipped, except
    ``accuracy_drop``, which needs labels: asking for it without them is an error, not a pass."""
    failures = []
    for key, limit in limits.items():
        if key not in metrics:
            if key == "accuracy_drop":
                raise ParityError(f"{variant}: the accuracy gate needs labelled parity images (none were given).")
            continue
        value = metrics[key]
        bad = value > limit if key in _UPPER_BOUNDS else value < limit
        if bad:
            relation = "<=" if key in _UPPER_BOUNDS else ">="
            failures.append(f"{key} = {value:.6g} (required {relation} {limit:g})")
    if failures:
        hint = ""
        if variant in QUANTISED_VARIANTS and "top1_agreement" in limits:
            hint = (" An untrained (random-init) model has nearly tied logits, so int8 top-1 agreement is poor; "
                    "export a trained model.")
        if "accuracy_drop" in limits and "accuracy" in metrics:
            hint = (f" Keras: {metrics['keras_accuracy']:.4f}, {variant}: {metrics['accuracy']:.4f} on "
                    f"{metrics['num_labelled_images']} labelled images.")
        raise ParityError(
            f"Parity check failed for {variant} on {metrics.get('num_images')} images: {'; '.join(failures)}.{hint}"
        )
    return True
