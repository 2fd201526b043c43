"""Classify image files, huge ones without ever loading them whole.

A variational saccader (:class:`~saccade_zoo.models.variational.VariationalSaccader`) on a tiled pyramid TIFF
(:mod:`saccade_zoo.data.tiled_tiff`):

1. the proxy: the pyramid level :func:`~saccade_zoo.layers.pyramid.proxy_level` picks (the coarsest level whose
   sides are >= 4 x the proxy's: 158 x 158 for a 2528 x 2528 image, 157 x 157 for 20000 x 20000) is read whole
   and area-resized to the proxy size, as the model does in its graph (`PyramidLevel` + `AreaResize`);
2. the T windows: the VRNN on the proxy (`VariationalSaccader.plan`, posterior means) gives the windows, converted
   to pixel boxes of the file's full resolution;
3. the T glimpses: each box is read with ``TiledImage.read_region`` from the pyramid level
   :func:`~saccade_zoo.layers.pyramid.glimpse_levels` picks (the coarsest level where the window is still >= 2 x the
   glimpse side), the level the model's in-graph pyramid samples in training; only the tiles under the window are
   decoded. The windows depend on the proxy alone, so all T windows of every image in a batch are read at once by
   a bounded thread pool (``num_workers``; tile decoding releases the GIL);
4. the crop classifier (`VariationalSaccader.classify_glimpses`); the logits are the mean over the T steps.

Memory does not grow with the image: a proxy level (at most about 256 x 256) and T windows of at most 4 x 4 glimpse
sides (< 2 x the glimpse side per axis at their level, plus a tile of slack per window edge in the tile cache).

The same model on the same in-memory image computes the same boxes and logits (tested): the proxy level and the
glimpse levels are the writer's 2 x 2 box filter, the sampling is the zoo's one bilinear convention. Float TIFFs
give logits within 1e-4 of the in-graph model; uint8 files store each level rounded to integers (at most half a
grey level per level), which moves logits slightly but not the top-1 (tested).

Any other zoo model (a Saccader, RAM, a ResNet, ...) and any ordinary image: the image is read at the model's
input size (``read_region`` of the whole image from the coarsest level >= 2 x that size; the image itself when
sizes agree), standardised, classified by the whole model; its glimpse boxes are scaled to the file's pixels.

Errors are per file: a missing file, a file that is not an image, a corrupt or truncated TIFF, a decompression bomb
(more than ``max_pixels``), an image smaller than the glimpse or of the wrong number of channels give a
:class:`FileResult` with ``error`` set (naming the file); the other files are still classified.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import glob
import os
import time
import warnings
from typing import Iterable, Iterator, List, Optional, Sequence

import numpy as np

from saccade_zoo.data.tiled_tiff import DEFAULT_MAX_PIXELS, TiledImage, _downsample2
from saccade_zoo.layers.pyramid import glimpse_levels, level_shape, proxy_level

IMAGE_EXTENSIONS = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


@dataclasses.dataclass
class FileResult:
    """What :class:`FilePredictor` found for one file.

    Attributes:
      path: the file.
      error: None, or the reason the file could not be classified (``"ValueError: <path>: corrupt TIFF ..."``).
      shape: (H, W, C) of the file's full resolution.
      probabilities: (classes,) softmax (or sigmoid, multi-label) of the logits.
      logits: (classes,).
      top: [(class name, probability)] best first (``top_k`` of them).
      boxes: (T, 4) glimpse boxes (y0, x0, y1, x1) in the file's full-resolution pixels, in time order (None for a
        model without glimpses).
      levels: (T,) pyramid level each glimpse was read from (variational saccaders; None otherwise).
      timings: seconds spent on this file's batch, split in "open", "proxy", "plan", "reads", "classify" (the
        batch's time, shared by its files).
    """

    path: str
    error: Optional[str] = None
    shape: Optional[tuple] = None
    probabilities: Optional[np.ndarray] = None
    logits: Optional[np.ndarray] = None
    top: Optional[list] = None
    boxes: Optional[np.ndarray] = None
    levels: Optional[np.ndarray] = None
    timings: dict = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict:
        """A JSON-ready dict."""
        out = {"file": self.path, "error": self.error}
        if self.ok:
            out.update(height=int(self.shape[0]), width=int(self.shape[1]), channels=int(self.shape[2]),
                       top=[{"class": name, "probability": float(p)} for name, p in self.top],
                       probabilities=[float(p) for p in self.probabilities])
            out["boxes"] = None if self.boxes is None else np.asarray(self.boxes, np.float64).round(2).tolist()
            out["levels"] = None if self.levels is None else [int(k) for k in self.levels]
            out["timings"] = {k: round(float(v), 6) for k, v in self.timings.items()}
        return out


def expand_inputs(specs: Iterable[str]) -> List[str]:
    """Files named by ``specs``: a file as is (even a missing one: it is reported as an error later), a folder's
    image files (by extension, sorted), a glob pattern's matches (sorted). Duplicates are dropped, order kept.
    Raises ValueError when a folder or a pattern matches nothing."""
    out, seen = [], set()
    for spec in specs:
        spec = os.path.expanduser(str(spec))
        if os.path.isdir(spec):
            found = sorted(os.path.join(spec, n) for n in os.listdir(spec)
                           if n.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(spec, n)))
            if not found:
                raise ValueError(f"No image files ({', '.join(IMAGE_EXTENSIONS)}) in folder {spec}.")
        elif glob.has_magic(spec):
            found = sorted(p for p in glob.glob(spec) if os.path.isfile(p))
            if not found:
                raise ValueError(f"No files match {spec!r}.")
        else:
            found = [spec]
        for path in found:
            if path not in seen:
                seen.add(path)
                out.append(path)
    return out


def _standardise(pixels, preprocessing):
    """[0, 1] float pixels -> the model's input units (per-channel (x - mean) / std)."""
    if not preprocessing:
        return pixels.astype(np.float32, copy=False)
    mean = np.asarray(preprocessing["mean"], np.float32)
    std = np.asarray(preprocessing["std"], np.float32)
    return (pixels - mean) / std


def _probabilities(logits, activation):
    logits = np.asarray(logits, np.float64)
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class FilePredictor:
    """Classifies image files with a zoo model (see the module docstring).

    Args:
      model: a zoo model (``keras.models.load_model`` of a zoo ``.keras`` file, or ``saccade_zoo.build(...)``).
      top_k: classes reported per file.
      num_workers: threads reading glimpse windows (and opening files) concurrently; 1 reads one at a time.
      max_pixels: decompression-bomb guard of ``TiledImage`` (pass None to open anything).
      cache_tiles: tiles each open file keeps decoded.
    Use :meth:`predict` (an iterator of :class:`FileResult`, in input order) or :meth:`predict_one`.
    """

    def __init__(self, model, top_k: int = 5, num_workers: int = 8, max_pixels: Optional[float] = DEFAULT_MAX_PIXELS,
                 cache_tiles: int = 64):
        import tensorflow as tf

        from saccade_zoo.models.base import ZooModel
        from saccade_zoo.models.variational.model import VariationalSaccader

        if not isinstance(model, ZooModel):
            raise TypeError(f"FilePredictor needs a saccade_zoo model, got {type(model).__name__}.")
        self.model = model
        self.top_k = max(1, int(top_k))
        self.num_workers = max(1, int(num_workers))
        self.max_pixels = max_pixels
        self.cache_tiles = int(cache_tiles)
        self.variational = isinstance(model, VariationalSaccader) and not model.proxy_input
        self.activation = getattr(model, "activation", "softmax")
        self.class_names = list(model.class_names)
        self.preprocessing = model.preprocessing
        self.channels = int(model.image_shape[-1])
        self._resizers = {}
        if self.variational:
            self._plan = tf.function(model.plan, reduce_retracing=True)
            self._classify = tf.function(model.classify_glimpses, reduce_retracing=True)
        else:
            self._call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        self._pool = concurrent.futures.ThreadPoolExecutor(self.num_workers) if self.num_workers > 1 else None

    def close(self):
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -------------------------------------------------------------------------------------------- helpers
    def _map(self, fn, items):
        """[fn(item)] through the pool (or in this thread); an exception is returned in place of its result."""
        def safe(item):
            try:
                return fn(item)
            except Exception as e:  # reported per file
                return e
        if self._pool is None or len(items) < 2:
            return [safe(item) for item in items]
        return list(self._pool.map(safe, items))

    def _open(self, path):
        image = TiledImage(path, max_pixels=self.max_pixels, cache_tiles=self.cache_tiles)
        image.warnings = []  # re-emitted after the batch, once per message
        h, w, c = image.shape
        if c != self.channels and not (self.channels == 3 and c in (1, 4)):
            image.close()
            raise ValueError(f"{path}: {c} channel(s); the model takes {self.channels}.")
        if self.variational:
            side = self.model.glimpse_size
            if h < side or w < side:
                image.close()
                raise ValueError(f"{path}: image of {h} x {w} pixels is smaller than the model's {side} x {side} "
                                 "glimpse.")
        return image

    def _channels(self, pixels):
        """Match the model's channels: RGBA drops alpha, grey is repeated for an RGB model (`_open` refused every
        other mismatch)."""
        if pixels.shape[-1] == 4:
            pixels = pixels[..., :3]
        if pixels.shape[-1] == 1 and self.channels == 3:
            pixels = np.repeat(pixels, 3, axis=-1)
        return pixels

    def _file_level(self, image, level):
        """Pyramid level ``level`` (float32, [0, 1]) of the file: read whole when the file has it, else made from
        the file's finest level above it by the writer's 2 x 2 box filter (warned: the file's pyramid is short)."""
        h, w = image.shape[:2]
        available = {tuple(shape[:2]): k for k, shape in enumerate(image.levels)}
        for k in range(level, -1, -1):
            index = available.get(level_shape(h, w, k))
            if index is not None:
                pixels = image.read_level(index, dtype="float32")
                if k < level:
                    image.warnings.append(f"{image.path}: no pyramid level {level} ({level_shape(h, w, level)}); "
                                          f"made from level {k} in memory. Convert the file with "
                                          "tools/convert_to_tiff.py.")
                for _ in range(level - k):
                    pixels = _downsample2(pixels)
                return pixels
        raise ValueError(f"{image.path}: unexpected pyramid level sizes {image.levels}.")

    def _max_file_level(self, image):
        """The coarsest level index k such that levels 0..k of the file are the power-of-two pyramid."""
        h, w = image.shape[:2]
        k = 0
        while k + 1 < len(image.levels) and tuple(image.levels[k + 1][:2]) == level_shape(h, w, k + 1):
            k += 1
        return k

    def _resize_proxy(self, level_pixels):
        """The model's area resize of a proxy level to the proxy size (a layer per level shape)."""
        from saccade_zoo.layers.resize import AreaResize

        shape = level_pixels.shape[1:3]
        if shape not in self._resizers:
            layer = AreaResize(self.model.proxy_shape[:2])
            layer.build((None, *shape, level_pixels.shape[-1]))
            self._resizers[shape] = layer
        return self._resizers[shape](level_pixels)

    # -------------------------------------------------------------------------------------------- predict
    def predict(self, paths: Sequence[str], batch_size: int = 16, on_result=None) -> Iterator[FileResult]:
        """:class:`FileResult` per path, in order, classifying ``batch_size`` files at a time; ``on_result(result)``
        is called as each is ready (e.g. a progress bar)."""
        paths = list(paths)
        for start in range(0, len(paths), max(1, int(batch_size))):
            for result in self._predict_batch(paths[start:start + max(1, int(batch_size))]):
                if on_result is not None:
                    on_result(result)
                yield result

    def predict_one(self, path) -> FileResult:
        return next(iter(self.predict([path], batch_size=1)))

    def _predict_batch(self, paths):
        results = [FileResult(os.fspath(p)) for p in paths]
        t0 = time.perf_counter()
        # warnings.catch_warnings is process-wide: set here, around the threads, it catches theirs too.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            opened = self._map(self._open, [r.path for r in results])
        images = {}
        for i, item in enumerate(opened):
            if isinstance(item, Exception):
                results[i].error = _describe(item, results[i].path)
            else:
                images[i] = item
                item.warnings.extend(str(w.message) for w in caught if results[i].path in str(w.message))
        timings = {"open": time.perf_counter() - t0}
        try:
            if images:
                if self.variational:
                    self._variational(images, results, timings)
                else:
                    self._whole(images, results, timings)
        finally:
            for image in images.values():
                image.close()
        for i in images:
            if results[i].ok:
                results[i].timings = dict(timings)
                for message in dict.fromkeys(images[i].warnings):
                    warnings.warn(message, stacklevel=3)
        return results

    def _finish(self, result, image, logits, boxes=None, levels=None):
        result.shape = tuple(int(s) for s in image.shape)
        result.logits = np.asarray(logits, np.float32)
        result.probabilities = _probabilities(result.logits, self.activation).astype(np.float32)
        order = np.argsort(-result.probabilities, kind="stable")[:self.top_k]
        result.top = [(self.class_names[k] if k < len(self.class_names) else f"class_{k}",
                       float(result.probabilities[k])) for k in order]
        result.boxes = None if boxes is None else np.asarray(boxes, np.float32)
        result.levels = None if levels is None else np.asarray(levels, np.int64)

    def _variational(self, images, results, timings):
        from saccade_zoo.layers.spatial_transformer import affine_to_boxes

        model = self.model
        size = model.glimpse_size
        model_hw = tuple(model.image_shape[:2])

        # 1. proxies, grouped by the shape of their pyramid level (one planning call per group)
        t0 = time.perf_counter()

        def read_proxy(i):
            image = images[i]
            h, w = image.shape[:2]
            level = model.proxy_level if (h, w) == model_hw else proxy_level(h, w, model.proxy_shape[:2])
            return self._channels(self._file_level(image, level))

        levels = dict(zip(images, self._map(read_proxy, list(images))))
        groups = {}
        for i, pixels in levels.items():
            if isinstance(pixels, Exception):
                results[i].error = _describe(pixels, results[i].path)
            else:
                groups.setdefault(pixels.shape, []).append(i)
        proxies = {}
        for shape, members in groups.items():
            batch = _standardise(np.stack([levels[i] for i in members]), self.preprocessing)
            resized = np.asarray(self._resize_proxy(batch))
            proxies.update({i: resized[n] for n, i in enumerate(members)})
        timings["proxy"] = time.perf_counter() - t0

        # 2. windows from the VRNN on the proxies
        t0 = time.perf_counter()
        order = sorted(proxies)
        if not order:
            return
        plan = self._plan(np.stack([proxies[i] for i in order]))
        affine, h_prev = np.asarray(plan["affine"]), np.asarray(plan["h_prev"])
        boxes, glevels = {}, {}
        for n, i in enumerate(order):
            h, w = images[i].shape[:2]
            boxes[i] = np.asarray(affine_to_boxes(affine[n], (h, w)), np.float32)
            if (h, w) == model_hw:
                max_level = min(model.pyramid_levels - 1, self._max_file_level(images[i]))
            else:  # another size than the model's: as deep as the file goes
                max_level = self._max_file_level(images[i])
            glevels[i] = glimpse_levels(boxes[i], size, max_level)
        timings["plan"] = time.perf_counter() - t0

        # 3. every window of every image at once
        t0 = time.perf_counter()
        jobs = [(i, t) for i in order for t in range(model.num_glimpses)]

        def read(job):
            i, t = job
            y0, x0, y1, x1 = (float(v) for v in boxes[i][t])
            return images[i].read_region(y0, x0, y1, x1, size, dtype="float32", level=int(glevels[i][t]))

        reads = self._map(read, jobs)
        glimpses = {}
        for (i, t), pixels in zip(jobs, reads):
            if isinstance(pixels, Exception):
                if results[i].ok:
                    results[i].error = _describe(pixels, results[i].path)
            else:
                glimpses.setdefault(i, [None] * model.num_glimpses)[t] = self._channels(pixels)
        timings["reads"] = time.perf_counter() - t0

        # 4. the crop classifier
        t0 = time.perf_counter()
        good = [n for n, i in enumerate(order) if results[i].ok]
        if good:
            batch = _standardise(np.stack([np.stack(glimpses[order[n]]) for n in good]), self.preprocessing)
            step_logits = np.asarray(self._classify(batch, h_prev[good]))
            for row, n in enumerate(good):
                i = order[n]
                self._finish(results[i], images[i], step_logits[row].mean(0), boxes[i], glevels[i])
        timings["classify"] = time.perf_counter() - t0

    def _whole(self, images, results, timings):
        model = self.model
        mh, mw = (int(s) for s in model.image_shape[:2])
        t0 = time.perf_counter()

        def read(i):
            h, w = images[i].shape[:2]
            return self._channels(images[i].read_region(0, 0, h, w, (mh, mw), dtype="float32"))

        pixels = dict(zip(images, self._map(read, list(images))))
        good = []
        for i, p in pixels.items():
            if isinstance(p, Exception):
                results[i].error = _describe(p, results[i].path)
            else:
                good.append(i)
        timings["reads"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if good:
            out = self._call(_standardise(np.stack([pixels[i] for i in good]), self.preprocessing))
            logits = np.asarray(out["logits"])
            boxes = np.asarray(out["boxes"]) if "boxes" in out else None
            for row, i in enumerate(good):
                h, w = images[i].shape[:2]
                scaled = None
                if boxes is not None:
                    scaled = boxes[row] * np.array([h / mh, w / mw, h / mh, w / mw], np.float32)
                self._finish(results[i], images[i], logits[row], scaled)
        timings["classify"] = time.perf_counter() - t0


def _describe(error, path):
    text = str(error)
    if path not in text:
        text = f"{path}: {text}"
    return f"{type(error).__name__}: {text}"


def overview(path, max_side=512, max_pixels: Optional[float] = DEFAULT_MAX_PIXELS):
    """A small picture of a file for drawing glimpses on: (pixels (h, w, C) float32 in [0, 1], scale (sy, sx) of
    overview pixels per full-resolution pixel), read from the coarsest pyramid level >= ``max_side`` / 2."""
    with TiledImage(path, max_pixels=max_pixels) as image:
        h, w = image.shape[:2]
        f = min(1.0, max_side / max(h, w))
        oh, ow = max(1, round(h * f)), max(1, round(w * f))
        return image.read_region(0, 0, h, w, (oh, ow), dtype="float32"), (oh / h, ow / w)


def predict_files(model, paths, batch_size=16, **kwargs) -> List[FileResult]:
    """:class:`FileResult` for each of ``paths`` (files, folders or globs, see :func:`expand_inputs`)."""
    with FilePredictor(model, **kwargs) as predictor:
        return list(predictor.predict(expand_inputs(paths), batch_size=batch_size))


def load_model(spec, compile=False):
    """A zoo model from ``spec``: a ``.keras`` file, or the name of a shipped model (`saccade_zoo.list_pretrained`).
    A ValueError names what was tried when neither fits."""
    import keras

    import saccade_zoo
    from saccade_zoo.models.base import ZooModel

    spec = os.fspath(spec)
    if os.path.isfile(spec):
        model = keras.models.load_model(spec, safe_mode=True, compile=compile)
    elif spec in saccade_zoo.list_pretrained():
        model = saccade_zoo.load_pretrained(spec, compile=compile)
    else:
        raise ValueError(f"{spec!r} is neither a .keras file nor a shipped model (shipped: "
                         f"{', '.join(saccade_zoo.list_pretrained()) or 'none'}).")
    if not isinstance(model, ZooModel):
        raise ValueError(f"{spec} holds a {type(model).__name__}, not a saccade_zoo model.")
    return model
