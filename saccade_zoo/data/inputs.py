"""A model's inputs as arrays: one array of images, or a dict of arrays of one length for a model with several
inputs (a variational saccader with ``proxy_input=True`` takes ``{"images": ..., "proxy": ...}``). Training,
evaluation and the tools index examples through these helpers, so both kinds flow through the same code.

Images too large to hold a dataset of in memory (2528 x 2528 canvases: 25 MB each as float32; 1500 x 1500
megapixel canvases) are :class:`LazyImages`: an array-like with ``shape``, ``dtype`` and ``len`` whose examples are
made when indexed (:class:`ResizedImages`: small canvases bilinearly upsampled, the variational saccading paper's
2528 x 2528 cluttered MNIST; :class:`GeneratedImages`: made one by one by a seeded generator). ``take_examples``
materialises only the batch asked for, and training (`saccade_zoo.training.runner.batch_stream`) and evaluation
(`predict_in_batches`) read them batch by batch.
"""
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
    """The examples ``index`` (an integer array or a slice) of ``inputs``, of the same kind (a :class:`LazyImages`
    gives a NumPy array of the examples asked for)."""
    if isinstance(inputs, dict):
        return {name: take_examples(value, index) for name, value in inputs.items()}
    if isinstance(inputs, LazyImages):
        return inputs[index]
    return np.asarray(inputs)[index]


class LazyImages:
    """Images made when indexed: ``len``, ``shape`` (N, H, W, C), ``dtype`` float32, ``images[index]`` (an integer,
    a slice or an integer array) -> float32 NumPy array. Subclasses define ``_make(indices) -> (n, H, W, C)``.
    ``np.asarray`` of the whole is refused (it would hold the dataset in memory): index it in batches."""

    dtype = np.dtype("float32")

    def __init__(self, count, image_shape):
        self._count = int(count)
        self.shape = (self._count,) + tuple(int(s) for s in image_shape)

    def __len__(self):
        return self._count

    @property
    def ndim(self):
        return len(self.shape)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self[np.array([index])][0]
        if isinstance(index, slice):
            index = np.arange(self._count)[index]
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        index = index.astype(np.int64)
        if index.size and (index.min() < -self._count or index.max() >= self._count):
            raise IndexError(f"index out of range for {self._count} images.")
        index = np.where(index < 0, index + self._count, index)
        out = np.asarray(self._make(index), np.float32)
        assert out.shape == (len(index),) + self.shape[1:], (out.shape, self.shape)
        return out

    def __array__(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} holds {self._count} images of {self.shape[1:]} made on demand: index "
                        "it in batches (take_examples / predict_in_batches) rather than converting it whole.")

    def _make(self, index):
        raise NotImplementedError


class ResizedImages(LazyImages):
    """(N, h, w, C) images (an array or :class:`LazyImages`) resized to ``size`` when indexed: bilinear (half-pixel
    centres, no antialiasing) when enlarging, the variational saccading paper's 2528 x 2528 cluttered MNIST (a
    bilinear upsample of the 100 x 100 canvases); area averaging when shrinking (e.g. a 180 x 180 view of a 1500 x
    1500 canvas)."""

    def __init__(self, images, size):
        if not isinstance(images, LazyImages):
            images = np.asarray(images)
        if len(images.shape) != 4:
            raise ValueError(f"ResizedImages needs (N, H, W, C) images, got shape {images.shape}.")
        size = (int(size), int(size)) if np.isscalar(size) else tuple(int(s) for s in size)
        super().__init__(len(images), (*size, images.shape[-1]))
        self.source, self.size = images, size
        self.method = "bilinear" if size[0] * size[1] >= images.shape[1] * images.shape[2] else "area"

    def _make(self, index, chunk=8):
        import tensorflow as tf
        out = np.empty((len(index),) + self.shape[1:], np.float32)
        for start in range(0, len(index), chunk):  # a few source images at a time (1500^2 or 2528^2 sources)
            part = np.asarray(take_examples(self.source, index[start:start + chunk]), np.float32)
            out[start:start + chunk] = tf.image.resize(part, self.size, method=self.method).numpy()
        return out


class GeneratedImages(LazyImages):
    """Images ``generator(i)["image"]`` (H, W, C) float in [0, 1], made one at a time when indexed (e.g. a
    `saccade_zoo.data.megapixel.MegapixelGenerator`, seeded per index)."""

    def __init__(self, generator, count, image_shape):
        super().__init__(count, image_shape)
        self.generator = generator

    def _make(self, index):
        return np.stack([np.asarray(self.generator(int(i))["image"], np.float32) for i in index]) if len(index) else \
            np.zeros((0,) + self.shape[1:], np.float32)


def predict_in_batches(model, inputs, batch_size, chunk=None):
    """``model.predict`` over ``inputs`` (arrays, a dict of arrays or :class:`LazyImages`), outputs as NumPy arrays (a
    dict for a dict-output model). Lazy images are made ``chunk`` examples at a time (default 4 batches, at most
    ~1 GB of inputs, and batches no larger than a chunk); arrays go to ``predict`` whole unless ``chunk`` is given."""
    total = num_examples(inputs)
    values = list(inputs.values()) if isinstance(inputs, dict) else [inputs]
    lazy = any(isinstance(v, LazyImages) for v in values)
    if chunk is None and lazy:  # about 1 GB of inputs at a time (39 images of 2528^2), batches no larger
        example_bytes = sum(4 * int(np.prod(v.shape[1:])) for v in values)
        chunk = max(1, min(4 * int(batch_size), int(1e9 // max(1, example_bytes))))
        batch_size = min(int(batch_size), chunk)
    chunk = int(chunk or max(total, 1))
    parts = []
    for start in range(0, total, chunk):
        out = model.predict(take_examples(inputs, slice(start, min(total, start + chunk))),
                            batch_size=int(batch_size), verbose=0)
        parts.append(out)
    if isinstance(parts[0], dict):
        return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}
    return np.concatenate([np.asarray(p) for p in parts])


def image_array(inputs):
    """The full-resolution images of ``inputs`` (``inputs["images"]`` for a dict)."""
    if isinstance(inputs, dict):
        if "images" not in inputs:
            raise ValueError(f"Inputs given as a dict need an 'images' entry, got {sorted(inputs)}.")
        return inputs["images"]
    return inputs
