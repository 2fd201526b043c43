"""Inference on image files: :class:`FilePredictor` classifies files (huge tiled pyramid TIFFs without loading them,
through a variational saccader's proxy and glimpse reads; any zoo model on ordinary images), ``tools/predict.py``
is its command line."""
from saccade_zoo.inference.files import FilePredictor, FileResult, expand_inputs, load_model, overview, predict_files

__all__ = ["FilePredictor", "FileResult", "expand_inputs", "load_model", "overview", "predict_files"]
