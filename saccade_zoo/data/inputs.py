"""A model's inputs as arrays: one array of images, or a dict of arrays of one length for a model with several
inputs (a variational saccader with ``proxy_input=True`` takes ``{"images": ..., "proxy": ...}``). Training,
evaluation and the tools index examples through these helpers, so both kinds flow through the same code."""
import numpy as np


def num_examples(inputs):
    """Examples in ``inputs`` (an array, or a dict of arrays that must agree in length)."""
    if isinstance(inputs, dict):
        lengths = {name: len(value) for name, value in inputs.items()}
        if not lengths or len(set(lengths.values())) != 1:
            raise ValueError(f"The inputs' arrays must have one length, got {lengths}.")
        return next(iter(lengths.values()))
    return len(inputs)


def take_examples(inputs, index):
    """The examples ``index`` (an integer array or a slice) of ``inputs``, of the same kind."""
    if isinstance(inputs, dict):
        return {name: np.asarray(value)[index] for name, value in inputs.items()}
    return np.asarray(inputs)[index]


def image_array(inputs):
    """The full-resolution images of ``inputs`` (``inputs["images"]`` for a dict)."""
    if isinstance(inputs, dict):
        if "images" not in inputs:
            raise ValueError(f"Inputs given as a dict need an 'images' entry, got {sorted(inputs)}.")
        return inputs["images"]
    return inputs
