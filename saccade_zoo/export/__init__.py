"""Serving artifacts for the zoo's models: .keras, SavedModel and TFLite (float32, float16, dynamic-range int8,
full int8), each checked against Keras on real images, plus a manifest.

    import saccade_zoo
    from saccade_zoo.export import export_model, real_images

    model = saccade_zoo.build("saccader_cluttered100")
    images, _ = real_images(model.image_shape, 64)
    manifest = export_model(model, "exports/saccader_cluttered100", images)

The serving signature takes float32 pixels in [0, 1] (mean/std standardisation inside); see `serving`.
"""
from saccade_zoo.export.core import (KERAS_FILE, MANIFEST, SAVED_MODEL_DIR, export_model,
                                     keras_reference, load_manifest, run_saved_model, sha256, tflite_filename,
                                     verify_files)
from saccade_zoo.export.images import labelled_task, real_images
from saccade_zoo.export.parity import MIN_LABELLED_IMAGES, THRESHOLDS, ParityError, compare_outputs
from saccade_zoo.export.serving import resolve_preprocessing, save_serving, serving_archive, serving_function
from saccade_zoo.export.tflite import VARIANTS, TFLiteRunner, UnsupportedOpsError, convert_tflite, unsupported_ops

__all__ = [
    "KERAS_FILE", "MANIFEST", "MIN_LABELLED_IMAGES", "SAVED_MODEL_DIR", "THRESHOLDS", "VARIANTS", "ParityError",
    "TFLiteRunner", "UnsupportedOpsError", "compare_outputs", "convert_tflite", "export_model", "keras_reference",
    "labelled_task", "load_manifest", "real_images", "resolve_preprocessing", "run_saved_model", "save_serving",
    "serving_archive", "serving_function", "sha256", "tflite_filename", "unsupported_ops", "verify_files",
]
