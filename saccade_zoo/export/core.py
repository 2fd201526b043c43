"""`export_model`: .keras + SavedModel + four TFLite variants + manifest.json, each proven equal to Keras."""
import datetime
import hashlib
import json
import os
import shutil

import numpy as np

import keras
import tensorflow as tf

from saccade_zoo.contract import OUTPUT_DOCS
from saccade_zoo.export import parity as _parity
from saccade_zoo.export import serving as _serving
from saccade_zoo.export import tflite as _tflite

MANIFEST = "manifest.json"
KERAS_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"
MODEL_CARD = "README.md"  # a shipped model's card (exports/<name>/README.md), not an artifact: not hashed
FORMAT_VERSION = 1

def tflite_filename(variant):
    return f"model_{variant}.tflite"


def sha256(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def file_table(folder):
    """{relative path: {bytes, sha256}} of every file under folder (sorted), but the manifest and the model card."""
    table = {}
    for root, _, files in os.walk(folder):
        for name in sorted(files):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder).replace(os.sep, "/")
            if rel in (MANIFEST, MODEL_CARD):  # the manifest itself; the card is written after the export
                continue
            table[rel] = {"bytes": os.path.getsize(path), "sha256": sha256(path)}
    return dict(sorted(table.items()))


def check_raw_pixels(images, image_shape, what):
    """Raw pixels as float32 in [0, 1]: uint8 is scaled by 1/255; anything else outside [0, 1] is refused. (The
    models' own `saccade_zoo.models.base.check_model_input` validates standardised images instead.)"""
    images = np.asarray(images)
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(image_shape) or len(images) == 0:
        raise ValueError(
            f"{what} must have shape (N >= 1, {', '.join(str(d) for d in image_shape)}) to match the model; "
            f"got {images.shape}."
        )
    if images.dtype == np.uint8:
        images = images.astype("float32") / 255.0
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"{what} must be float pixels in [0, 1] or uint8, got dtype {images.dtype}.")
    images = images.astype("float32")
    if not np.isfinite(images).all():
        raise ValueError(f"{what} contain NaN or Inf.")
    if images.min() < 0.0 or images.max() > 1.0:
        raise ValueError(
            f"{what} must be raw pixels in [0, 1] (the signature standardises them itself); got values in "
            f"[{images.min():.3g}, {images.max():.3g}]."
        )
    return images


def keras_reference(model, images, preprocessing, batch_size=16):
    """Outputs of the Keras model on raw images (standardised with the same mean/std as the signature)."""
    fn = _serving.serving_function(model, preprocessing)
    chunks = [{k: np.asarray(v) for k, v in fn(tf.constant(images[i : i + batch_size])).items()}
              for i in range(0, len(images), batch_size)]
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def run_saved_model(path, images, batch_size=16):
    loaded = tf.saved_model.load(str(path))
    fn = loaded.signatures[_serving.SIGNATURE_KEY]
    chunks = [{k: v.numpy() for k, v in fn(images=tf.constant(images[i : i + batch_size])).items()}
              for i in range(0, len(images), batch_size)]
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def _versions():
    import saccade_zoo

    versions = {"saccade_zoo": saccade_zoo.__version__, "tensorflow": tf.__version__, "keras": keras.__version__}
    try:
        from importlib.metadata import version

        versions["ai_edge_litert"] = version("ai-edge-litert")
    except Exception:  # pragma: no cover - metadata missing
        pass
    return versions


def _prepare_out_dir(out_dir, overwrite):
    out_dir = os.path.abspath(str(out_dir))
    if os.path.exists(out_dir):
        if not overwrite:
            raise FileExistsError(f"Output folder {out_dir} already exists; pass overwrite=True (--overwrite) "
                                  "to replace it.")
        if not os.path.isdir(out_dir):
            raise FileExistsError(f"Output path {out_dir} exists and is not a folder.")
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    staging = out_dir + ".partial"
    if os.path.exists(staging):
        shutil.rmtree(staging)
    os.makedirs(staging)
    return out_dir, staging


def export_model(model, out_dir, representative_images, class_names=None, preprocessing=None, overwrite=False,
                 variants=_tflite.VARIANTS, parity_images=None, thresholds=None, images_description=None,
                 check_parity=True, calibration_steps=100, log=None, calibration_description=None,
                 parity_labels=None, min_labelled_images=_parity.MIN_LABELLED_IMAGES, compile_state=True):
    """Export ``model`` to ``out_dir`` and return the manifest (also written to ``out_dir/manifest.json``).

    Writes ``model.keras`` (``model.save``: compile state kept, optimizer moments included; with
    ``compile_state=False`` the weights and the architecture only, also in the SavedModel, e.g. to ship a model
    whose Adam moments would triple the files: compile it before ``fit``), ``saved_model/`` (``serving_default``:
    float32 [0, 1] pixels in, named outputs out) and ``model_<variant>.tflite`` for each of ``variants``. Parity against
    Keras is measured on ``parity_images`` (default: ``representative_images``, raw [0, 1] pixels or uint8; pass
    held-out images so the int8 numbers are not measured on the calibration set) and the export raises
    `ParityError` (leaving nothing at ``out_dir``) when a variant misses its gate (`saccade_zoo.export.parity`).

    ``parity_labels`` (one per parity image, in the model's label format: class indices, or multi-hot for a
    multi-label model) turns on the accuracy gate of the quantised variants: their top-1 accuracy must be within
    1.0 point of Keras's. It needs at least ``min_labelled_images`` (1000) images when a quantised variant is
    written (other variants only record the accuracy). Without labels the quantised
    variants are gated on top-1 agreement with Keras instead, and the manifest says so. ``thresholds``
    ({variant: {metric: limit}}) overrides the gates of the variants it names.
    Ops that are not TFLite built-ins raise `UnsupportedOpsError` naming the ops and layers.
    """
    log = log or (lambda message: None)
    if not isinstance(model, keras.Model):
        raise TypeError(f"export_model needs a keras.Model, got {type(model).__name__}.")
    unknown = [v for v in variants if v not in _tflite.VARIANTS]
    if unknown:
        raise ValueError(f"Unknown TFLite variant(s) {unknown}; choose from {', '.join(_tflite.VARIANTS)}.")
    names = _serving.output_names(model)
    pre = _serving.resolve_preprocessing(model, preprocessing)
    image_shape = (*pre["image_size"], pre["channels"])
    representative = check_raw_pixels(representative_images, image_shape, "representative_images")
    test_images = representative if parity_images is None else check_raw_pixels(parity_images, image_shape,
                                                                            "parity_images")
    if parity_labels is not None:
        parity_labels = np.asarray(parity_labels)
        if len(parity_labels) != len(test_images):
            raise ValueError(f"parity_labels has {len(parity_labels)} labels for {len(test_images)} parity images.")
        quantised = [v for v in variants if v in _parity.QUANTISED_VARIANTS]
        if quantised and len(parity_labels) < int(min_labelled_images):
            raise ValueError(f"The accuracy gate of the quantised variants ({', '.join(quantised)}) needs >= "
                             f"{int(min_labelled_images)} labelled parity images, got {len(parity_labels)}.")
    num_classes = int(model.output["logits"].shape[-1])
    class_names = list(model.class_names if class_names is None else class_names)
    if len(class_names) != num_classes or not all(isinstance(c, str) for c in class_names):
        raise ValueError(f"class_names must be {num_classes} strings (one per class), got {len(class_names)}.")
    if not compile_state:  # every artifact without the optimizer (the SavedModel would carry its moments too)
        model = uncompiled_copy(model)
    out_dir, staging = _prepare_out_dir(out_dir, overwrite)

    try:
        manifest = _export_into(model, staging, names, pre, image_shape, representative, test_images, class_names,
                                variants, thresholds, images_description, check_parity, calibration_steps, log,
                                calibration_description, parity_labels)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.replace(staging, out_dir)
    return manifest


def uncompiled_copy(model):
    """A copy of ``model`` with the same architecture and weights and no compile state (no optimizer and its
    moments); ``model`` itself when it has none."""
    if getattr(model, "optimizer", None) is None:
        return model
    copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def _export_into(model, folder, names, pre, image_shape, representative, test_images, class_names, variants,
                 thresholds, images_description, check_parity, calibration_steps, log, calibration_description=None,
                 labels=None):
    compile_state = getattr(model, "optimizer", None) is not None
    log(f"Saving {KERAS_FILE}" + ("" if compile_state else " (weights and architecture, no compile state)"))
    model.save(os.path.join(folder, KERAS_FILE))
    log(f"Writing {SAVED_MODEL_DIR}/")
    saved_model = os.path.join(folder, SAVED_MODEL_DIR)
    _serving.save_serving(model, saved_model, pre)

    reference = keras_reference(model, test_images, pre)
    results = {}
    failures = []

    contract = model.contract
    noise_floor = None
    if contract.closed_loop:  # the model's own sensitivity: Keras vs Keras on the images plus 1e-6 of noise
        noise = np.random.default_rng(0).normal(0.0, _parity.NOISE_FLOOR_STD, test_images.shape)
        perturbed = keras_reference(model, (test_images.astype("float64") + noise).astype("float32"), pre)
        noise_floor = _parity.compare_outputs(reference, perturbed, labels, contract)
        noise_floor["input_noise_std"] = _parity.NOISE_FLOOR_STD
        log("Keras noise floor (closed-loop model): " + ", ".join(
            f"{k}={v:.6g}" for k, v in noise_floor.items() if isinstance(v, float)))

    def record(variant, outputs, threshold_key):
        metrics = _parity.compare_outputs(reference, outputs, labels, contract)
        if noise_floor is not None:
            limits = _parity.closed_loop_gates(threshold_key, labels is not None, noise_floor, thresholds)
        else:
            limits = _parity.gates(threshold_key, labels is not None, thresholds)
        try:
            _parity.check(threshold_key, metrics, limits)
            metrics["passed"] = True
        except _parity.ParityError as error:
            metrics["passed"] = False
            failures.append(f"{variant}: {str(error).split(': ', 1)[-1]}")
        metrics["thresholds"] = dict(limits)
        results[variant] = metrics
        log(f"parity {variant}: " + ", ".join(f"{k}={v:.6g}" for k, v in metrics.items()
                                             if isinstance(v, float)))

    log("Checking model.keras reload")
    import saccade_zoo  # noqa: F401  (registers the classes for load_model)

    reloaded = keras.models.load_model(os.path.join(folder, KERAS_FILE), safe_mode=True)
    record("keras_reload", keras_reference(reloaded, test_images, pre), "savedmodel")
    del reloaded
    log("Checking SavedModel")
    record("savedmodel", run_saved_model(saved_model, test_images), "savedmodel")

    tflite_info = {}
    for variant in variants:
        log(f"Converting TFLite {variant}")
        content = _tflite.convert_tflite(saved_model, variant, representative, model=model,
                                         calibration_steps=calibration_steps)
        path = os.path.join(folder, tflite_filename(variant))
        with open(path, "wb") as handle:
            handle.write(content)
        outputs = _tflite.TFLiteRunner(model_content=content).predict(test_images, batch_size=1)
        record(f"tflite_{variant}", outputs, variant)
        tflite_info[variant] = {"file": tflite_filename(variant), "bytes": len(content)}

    if check_parity and failures:
        raise _parity.ParityError("Export parity check failed: " + " | ".join(failures))

    specs = contract.output_specs()
    outputs_spec = {}
    for key in names:
        shape, dtype = specs["logits" if key == "probabilities" else key]
        doc = OUTPUT_DOCS[key]
        outputs_spec[key] = {"dtype": dtype, "shape": [None, *[int(d) for d in shape]],
                             "description": doc[contract.location_kind] if isinstance(doc, dict) else doc}
    num_glimpses = getattr(model, "num_glimpses", None)
    num_calibration = int(min(len(representative), calibration_steps))
    manifest = {
        "format_version": FORMAT_VERSION,
        "model": {
            "name": model.name,
            "class": type(model).__name__,
            "preset": getattr(model, "preset", None),
            "contract": contract.get_config(),
            "num_parameters": int(model.count_params()),
            "num_classes": len(class_names),
            "num_glimpses": None if num_glimpses is None else int(num_glimpses),
            "receptive_field": getattr(model, "receptive_field", None),
            "grid_shape": list(getattr(model, "grid_shape", ()) or []) or None,
        },
        "input": {
            "name": _serving.INPUT_NAME,
            "dtype": "float32",
            "shape": [None, *image_shape],
            "layout": "NHWC",
            "value_range": [0.0, 1.0],
            "note": "raw pixels scaled to [0, 1] (uint8 / 255); the signature applies (x - mean) / std itself",
        },
        "preprocessing": {**pre, "inside_signature": True},
        "outputs": outputs_spec,
        "class_names": class_names,
        "signature": _serving.SIGNATURE_KEY,
        "artifacts": {
            "keras": KERAS_FILE,
            "keras_compile_state": compile_state,
            "saved_model": SAVED_MODEL_DIR,
            "tflite": {v: {**info, "description": _TFLITE_DOCS[v]} for v, info in tflite_info.items()},
            "tflite_batch": "dynamic batch axis (shape_signature -1); the interpreter starts at batch 1",
        },
        "parity": {
            "images": images_description or f"{len(test_images)} images",
            "num_images": int(len(test_images)),
            "num_calibration_images": num_calibration,
            "calibration_images": calibration_description or (
                "the parity images" if test_images is representative else f"{num_calibration} other images"),
            "labelled": labels is not None,
            "quantised_gate": ("top-1 accuracy on the labelled parity images within 1.0 point of Keras's"
                               if labels is not None else
                               "top-1 agreement with Keras (no labelled images match this model's classes)"),
            "results": results,
            "checked": bool(check_parity),
            **({"closed_loop": True, "keras_noise_floor": noise_floor} if noise_floor is not None else {}),
        },
        "versions": _versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    manifest["files"] = file_table(folder)
    with open(os.path.join(folder, MANIFEST), "w") as handle:
        json.dump(manifest, handle, indent=2)
    return manifest


_TFLITE_DOCS = {
    "float32": "float32 weights and activations",
    "float16": "float16 weights (dequantized at load), float32 compute",
    "dynamic": "dynamic-range int8: int8 weights, float32 input/output",
    "int8": "full integer: int8 weights and activations calibrated on real images, float32 input/output",
}


def load_manifest(folder):
    with open(os.path.join(str(folder), MANIFEST)) as handle:
        return json.load(handle)


def verify_files(folder):
    """Re-hash an export folder's files against its manifest; returns the list of mismatching paths."""
    manifest = load_manifest(folder)
    current = file_table(str(folder))
    return sorted(p for p in set(manifest["files"]) | set(current) if manifest["files"].get(p) != current.get(p))
