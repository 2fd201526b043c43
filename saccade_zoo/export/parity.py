"""Parity of exported artifacts against the Keras model, on real images.

Thresholds (the export fails with `ParityError` when one is missed):
    savedmodel, tflite float32 : max |logits - keras logits| <= 1e-4 and identical glimpse locations
    tflite float16             : max |logits - keras logits| <= 1e-2
    tflite dynamic, int8       : top-1 agreement with Keras >= 95 % of images
Location agreement (share of images whose whole glimpse sequence matches Keras) is always reported.
"""
import numpy as np

THRESHOLDS = {
    "savedmodel": {"max_abs_logits": 1e-4, "location_agreement": 1.0},
    "float32": {"max_abs_logits": 1e-4, "location_agreement": 1.0},
    "float16": {"max_abs_logits": 1e-2},
    "dynamic": {"top1_agreement": 0.95},
    "int8": {"top1_agreement": 0.95},
}


class ParityError(AssertionError):
    """An exported variant disagrees with the Keras model beyond its threshold."""


def compare_outputs(reference, candidate):
    """Parity numbers of one candidate's outputs against the Keras reference outputs (dicts of arrays)."""
    ref_logits = np.asarray(reference["logits"], "float64")
    logits = np.asarray(candidate["logits"], "float64")
    if logits.shape != ref_logits.shape:
        raise ParityError(f"logits shape {logits.shape} differs from Keras {ref_logits.shape}.")
    result = {
        "num_images": int(len(ref_logits)),
        "max_abs_logits": float(np.max(np.abs(logits - ref_logits))) if logits.size else 0.0,
        "top1_agreement": float(np.mean(np.argmax(logits, -1) == np.argmax(ref_logits, -1))),
    }
    if "locations" in reference and "locations" in candidate:
        same = np.asarray(candidate["locations"]) == np.asarray(reference["locations"])
        result["location_agreement"] = float(np.mean(same.reshape(len(same), -1).all(axis=1)))
        result["glimpse_location_agreement"] = float(np.mean(same.all(axis=-1)))
    return result


def check(variant, metrics, thresholds=None):
    """Raise `ParityError` naming the variant and the measured number when a threshold is missed."""
    limits = (thresholds or THRESHOLDS)[variant]
    failures = []
    for key, limit in limits.items():
        if key not in metrics:
            continue
        value = metrics[key]
        bad = value > limit if key == "max_abs_logits" else value < limit
        if bad:
            relation = "<=" if key == "max_abs_logits" else ">="
            failures.append(f"{key} = {value:.6g} (required {relation} {limit:g})")
    if failures:
        hint = ""
        if variant in ("dynamic", "int8"):
            hint = (" An untrained (random-init) model has nearly tied logits, so int8 top-1 agreement is poor; "
                    "export a trained model.")
        raise ParityError(
            f"Parity check failed for {variant} on {metrics.get('num_images')} images: {'; '.join(failures)}.{hint}"
        )
    return True
