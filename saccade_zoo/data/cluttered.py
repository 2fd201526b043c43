"""Cluttered-digit datasets: the RAM / DRAM / variational-saccading benchmark family.

What the papers used
--------------------
* RAM (Mnih et al. 2014): "cluttered translated MNIST": 60 x 60 canvas with 4 distractors and 100 x 100 with
  8 distractors; each distractor is a random 8 x 8 piece of a random other digit, placed uniformly; the digit keeps
  its native 28 x 28 size and is placed uniformly; pixel values are clipped at 1.
* DRAM (Ba et al. 2015): two digits on 100 x 100 (identification = multi-hot over 10 classes; and the sum of the
  two digits, 19 classes), same clutter.
* Variational saccading (Ramapuram et al.): two-digit identification on "2528 x 2528" images. In the authors'
  code that is a *bilinear upsample of the whole 100 x 100 cluttered image* (``upscale=25.28`` /
  ``output_size=2528`` here), not a true high-resolution canvas. For a genuinely large image whose items keep
  their native 28 x 28 detail use ``canvas_size=2528, item_size=28, upscale=1`` (items are then tiny relative to
  the canvas); ``item_size`` > 28 bilinearly resizes each item before placement.

Everything is deterministic: example ``i`` of a dataset is generated from ``numpy.random.default_rng([seed, i])``
(plus one seeded permutation that decides which source item is example ``i``'s first item, so that with
``num_examples == len(items)`` every source item is the main item exactly once). Order of generation and
parallelism therefore do not change the data.

Targets (``task``):
* ``"single"``: one item, integer label (10 classes).
* ``"identify"``: multi-hot (10,) float32 of the items' classes (two items of one class give a single 1).
* ``"sum"``: integer sum of the items' labels (2 items: 19 classes).

Boxes: ``(y0, x0, y1, x1)`` float32 pixel coordinates in the *output* image (after ``upscale``), half-open
(``y1 = y0 + size``), one per item: the square the item was pasted into (not a tight box around ink). Use them to
decide whether a glimpse hit an object.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Sequence

import numpy as np

from saccade_zoo.data import idx as _idx

TASKS = ("single", "identify", "sum")
NUM_SOURCE_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class ClutteredConfig:
    """Parameters of a cluttered-item dataset.

    Attributes:
      canvas_size: side of the square canvas items are placed on (RAM: 60 or 100; DRAM/VS: 100).
      num_items: items per image (1 or 2 in the papers; any >= 1 works).
      num_distractors: clutter pieces per image (RAM: 4 on 60 x 60, 8 on 100 x 100).
      distractor_size: side of each clutter piece, cut from a random *other* item at item scale (papers: 8).
      item_size: side items are pasted at; 28 = native MNIST resolution (all papers); other values resize each
        item bilinearly before placement.
      upscale: factor of a bilinear upsample of the *whole* finished canvas (variational-saccading reference:
        100 -> 2528, i.e. 25.28). Output side = round(canvas_size * upscale).
      output_size: alternative to ``upscale``: the output side in pixels (overrides ``upscale`` when set).
      task: "single", "identify" or "sum" (see module docstring).
      allow_overlap: if False, items are placed so their boxes do not overlap (rejection sampling). The papers'
        generators placed items independently (overlap possible); default True.
    """

    canvas_size: int = 100
    num_items: int = 1
    num_distractors: int = 8
    distractor_size: int = 8
    item_size: int = 28
    upscale: float = 1
    output_size: Optional[int] = None
    task: str = "single"
    allow_overlap: bool = True

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}.")
        if self.num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {self.num_items}.")
        if self.task == "single" and self.num_items != 1:
            raise ValueError(f"task 'single' needs num_items=1, got {self.num_items} (use 'identify' or 'sum').")
        if self.task == "sum" and self.num_items < 2:
            raise ValueError("task 'sum' needs num_items >= 2.")
        if self.item_size < 1 or self.item_size > self.canvas_size:
            raise ValueError(f"item_size {self.item_size} must be in [1, canvas_size={self.canvas_size}].")
        if self.num_distractors < 0:
            raise ValueError(f"num_distractors must be >= 0, got {self.num_distractors}.")
        if self.num_distractors and not 1 <= self.distractor_size <= self.item_size:
            raise ValueError(
                f"distractor_size {self.distractor_size} must be in [1, item_size={self.item_size}].")
        if self.output_size is None and not self.upscale > 0:
            raise ValueError(f"upscale must be > 0, got {self.upscale}.")
        if self.output_size is not None and self.output_size < 1:
            raise ValueError(f"output_size must be >= 1, got {self.output_size}.")

    @property
    def image_size(self) -> int:
        """Side of the generated images (after upscaling)."""
        if self.output_size is not None:
            return int(self.output_size)
        return int(round(self.canvas_size * self.upscale))

    @property
    def name(self) -> str:
        """Short name, e.g. ``100px_1item_8distractors`` (+ ``_identify`` etc. for non-single tasks)."""
        s = f"{self.canvas_size}px_{self.num_items}item{'s' if self.num_items > 1 else ''}_{self.num_distractors}distractors"
        if self.item_size != 28:
            s += f"_item{self.item_size}"
        if self.image_size != self.canvas_size:
            s += f"_to{self.image_size}"
        if self.task != "single":
            s += f"_{self.task}"
        if not self.allow_overlap:
            s += "_nooverlap"
        return s


def num_classes(config: ClutteredConfig) -> int:
    """Number of output classes: 10 for single/identify, 9 * num_items + 1 for sum (19 for two items)."""
    if config.task == "sum":
        return (NUM_SOURCE_CLASSES - 1) * config.num_items + 1
    return NUM_SOURCE_CLASSES


def label_shape(config: ClutteredConfig):
    return (NUM_SOURCE_CLASSES,) if config.task == "identify" else ()


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) bilinear interpolation matrix, half-pixel centres (as ``tf.image.resize`` bilinear)."""
    scale = n_in / n_out
    src = (np.arange(n_out) + 0.5) * scale - 0.5
    src = np.clip(src, 0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    w = (src - lo).astype(np.float32)
    m = np.zeros((n_out, n_in), np.float32)
    m[np.arange(n_out), lo] += 1 - w
    m[np.arange(n_out), hi] += w
    return m


def bilinear_resize(image: np.ndarray, out_h: int, out_w: Optional[int] = None) -> np.ndarray:
    """Bilinear resize of a 2-D float array (separable, no antialiasing)."""
    out_w = out_h if out_w is None else out_w
    h, w = image.shape[:2]
    if (h, w) == (out_h, out_w):
        return image.astype(np.float32, copy=False)
    return resize_matrix(h, out_h) @ image.astype(np.float32) @ resize_matrix(w, out_w).T


def _validate_items(items: np.ndarray, labels: np.ndarray):
    items = np.asarray(items)
    labels = np.asarray(labels)
    if items.ndim != 3:
        raise ValueError(f"items must be (N, H, W) grey images, got shape {items.shape}.")
    if len(items) != len(labels):
        raise ValueError(f"items/labels count mismatch: {len(items)} items, {len(labels)} labels.")
    if len(items) < 2:
        raise ValueError("need at least 2 items (distractors are cut from other items).")
    if labels.min() < 0 or labels.max() >= NUM_SOURCE_CLASSES:
        raise ValueError(f"labels must be in [0, {NUM_SOURCE_CLASSES}), got range [{labels.min()}, {labels.max()}].")
    if items.dtype == np.uint8:
        f = items.astype(np.float32) / 255.0
    else:
        f = items.astype(np.float32)
        if f.min() < 0 or f.max() > 1:
            raise ValueError("float items must be in [0, 1] (or pass uint8 0-255).")
    return f, labels.astype(np.int64)


class ClutteredGenerator:
    """Makes example ``i`` deterministically from ``(items, labels, config, seed)``; ``gen(i)`` -> dict."""

    def __init__(self, items, labels, config: ClutteredConfig, seed: int = 0):
        self.config = config
        self.seed = int(seed)
        self.items, self.labels = _validate_items(items, labels)
        if self.items.shape[1:] != (config.item_size, config.item_size):
            self._scaled = None  # resized lazily per used item
        else:
            self._scaled = self.items
        self._perm = np.random.default_rng([self.seed, 2**31]).permutation(len(self.items))

    def _item(self, j: int) -> np.ndarray:
        if self._scaled is not None:
            return self._scaled[j]
        return np.clip(bilinear_resize(self.items[j], self.config.item_size), 0, 1)

    def _place(self, rng):
        c = self.config
        hi = c.canvas_size - c.item_size + 1
        for _attempt in range(1000):
            pos = rng.integers(0, hi, size=(c.num_items, 2))
            boxes = [(int(y), int(x), int(y) + c.item_size, int(x) + c.item_size) for y, x in pos]
            if c.allow_overlap or all(
                a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
                for k, a in enumerate(boxes) for b in boxes[k + 1:]
            ):
                return boxes
        raise ValueError(
            f"could not place {c.num_items} non-overlapping {c.item_size}px items on a "
            f"{c.canvas_size}px canvas; use allow_overlap=True or a larger canvas.")

    def __call__(self, i: int) -> Dict[str, np.ndarray]:
        c = self.config
        n = len(self.items)
        rng = np.random.default_rng([self.seed, int(i)])
        idx = [int(self._perm[int(i) % n])]
        for _ in range(c.num_items - 1):
            idx.append(int(rng.integers(n)))
        canvas = np.zeros((c.canvas_size, c.canvas_size), np.float32)
        ds = c.distractor_size
        # Distractors first, from items other than the ones on this canvas.
        for _ in range(c.num_distractors):
            j = int(rng.integers(n))
            while j in idx and n > len(set(idx)):
                j = int(rng.integers(n))
            piece_src = self._item(j)
            py, px = rng.integers(0, c.item_size - ds + 1, size=2)
            piece = piece_src[py:py + ds, px:px + ds]
            y, x = rng.integers(0, c.canvas_size - ds + 1, size=2)
            canvas[y:y + ds, x:x + ds] += piece
        boxes = self._place(rng)
        for j, (y, x, _, _) in zip(idx, boxes):
            canvas[y:y + c.item_size, x:x + c.item_size] += self._item(j)
        np.clip(canvas, 0.0, 1.0, out=canvas)
        boxes = np.asarray(boxes, np.float32)
        out_size = c.image_size
        if out_size != c.canvas_size:
            canvas = np.clip(bilinear_resize(canvas, out_size), 0.0, 1.0)
            boxes = boxes * (out_size / c.canvas_size)
        item_labels = self.labels[idx]
        return {
            "image": canvas[..., None].astype(np.float32),
            "label": make_target(item_labels, c),
            "boxes": boxes.astype(np.float32),
            "item_labels": item_labels.astype(np.int64),
        }


def make_target(item_labels: Sequence[int], config: ClutteredConfig):
    item_labels = np.asarray(item_labels, np.int64)
    if config.task == "single":
        return np.int64(item_labels[0])
    if config.task == "sum":
        return np.int64(item_labels.sum())
    t = np.zeros(NUM_SOURCE_CLASSES, np.float32)
    t[item_labels] = 1.0
    return t


def generate_cluttered(items, labels, num_examples: int, config: ClutteredConfig = ClutteredConfig(),
                       seed: int = 0, verbose: int = 0) -> Dict[str, np.ndarray]:
    """Generate ``num_examples`` cluttered images in memory.

    Args:
      items: (N, 28, 28) uint8 (0-255) or float in [0, 1] source items (MNIST / Fashion-MNIST).
      labels: (N,) ints in [0, 10).
      num_examples: how many images to make.
      config: a :class:`ClutteredConfig`.
      seed: example ``i`` depends only on ``(seed, i)`` and the inputs.
      verbose: 1 shows a ``keras.utils.Progbar``.

    Returns a dict: ``images`` float32 (N, H, W, 1) in [0, 1]; ``labels`` int64 (N,) or float32 (N, 10)
    multi-hot for "identify"; ``boxes`` float32 (N, num_items, 4) as (y0, x0, y1, x1) half-open pixel coords;
    ``item_labels`` int64 (N, num_items).
    """
    if num_examples < 0:
        raise ValueError(f"num_examples must be >= 0, got {num_examples}.")
    gen = ClutteredGenerator(items, labels, config, seed)
    s = config.image_size
    images = np.zeros((num_examples, s, s, 1), np.float32)
    tgt = np.zeros((num_examples,) + label_shape(config),
                   np.float32 if config.task == "identify" else np.int64)
    boxes = np.zeros((num_examples, config.num_items, 4), np.float32)
    item_labels = np.zeros((num_examples, config.num_items), np.int64)
    bar = None
    if verbose:
        import keras
        bar = keras.utils.Progbar(num_examples, verbose=verbose)
    for i in range(num_examples):
        ex = gen(i)
        images[i], tgt[i], boxes[i], item_labels[i] = ex["image"], ex["label"], ex["boxes"], ex["item_labels"]
        if bar is not None and ((i + 1) % 100 == 0 or i + 1 == num_examples):
            bar.update(i + 1)
    return {"images": images, "labels": tgt, "boxes": boxes, "item_labels": item_labels}


def load_items(split: str, data_dir=None):
    """Source items for ``split``: ``data_dir=None`` -> the IDX files in ``DEFAULT_DATA_DIR``;
    ``"sample"`` -> the shipped sample; any other string -> a folder of MNIST-format IDX files."""
    if isinstance(data_dir, str) and data_dir == "sample":
        from saccade_zoo.data.sample import load_sample
        return load_sample(split)
    return _idx.load_idx_split(data_dir, split)


def cluttered_dataset(split: str, config: ClutteredConfig = ClutteredConfig(), data_dir=None,
                      num_examples: Optional[int] = None, seed: int = 0, batch_size: Optional[int] = None,
                      shuffle: Optional[bool] = None, with_boxes: bool = False, drop_remainder: bool = False,
                      num_parallel_calls: Optional[int] = None):
    """A ``tf.data.Dataset`` of cluttered images generated on the fly (no preparation step).

    Items and distractor pieces come only from ``split``'s source items (test never sees train items).

    Args:
      split: "train" or "test".
      config: :class:`ClutteredConfig`.
      data_dir: None (``/usr/share/datasets/fashion-mnist``), "sample" (shipped sample) or an IDX folder.
      num_examples: dataset length; default = number of source items in the split (each is the main item once).
      seed: determinism; the same seed gives the same examples in the same order.
      batch_size: batch if given.
      shuffle: shuffle example order (seeded, reshuffled every epoch); default True for "train", else False.
      with_boxes: yield dicts ``{"image", "label", "boxes", "item_labels"}`` instead of ``(image, label)``.

    Yields ``image`` float32 (H, W, 1) in [0, 1] and ``label`` int64 () (or float32 (10,) for "identify").
    """
    import tensorflow as tf

    items, labels = load_items(split, data_dir)
    gen = ClutteredGenerator(items, labels, config, seed)
    n = len(items) if num_examples is None else int(num_examples)
    if n < 1:
        raise ValueError(f"num_examples must be >= 1, got {n}.")
    shuffle = (split == "train") if shuffle is None else shuffle
    s = config.image_size
    k = config.num_items
    lshape = label_shape(config)
    ldtype = tf.float32 if config.task == "identify" else tf.int64

    def _np_make(i):
        ex = gen(int(i))
        return ex["image"], np.asarray(ex["label"]), ex["boxes"], ex["item_labels"]

    def _make(i):
        image, label, boxes, item_labels = tf.numpy_function(
            _np_make, [i], (tf.float32, ldtype, tf.float32, tf.int64), stateful=False)
        image.set_shape((s, s, 1))
        label.set_shape(lshape)
        boxes.set_shape((k, 4))
        item_labels.set_shape((k,))
        if with_boxes:
            return {"image": image, "label": label, "boxes": boxes, "item_labels": item_labels}
        return image, label

    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(min(n, 100_000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(_make, num_parallel_calls=num_parallel_calls or tf.data.AUTOTUNE, deterministic=True)
    if batch_size:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


def glimpse_hits(glimpse_boxes, item_boxes, min_overlap: float = 0.0) -> np.ndarray:
    """Whether each glimpse hit each item.

    Args:
      glimpse_boxes: (..., G, 4) glimpse windows (y0, x0, y1, x1) in image pixels.
      item_boxes: (..., K, 4) item boxes as returned by the generator.
      min_overlap: fraction of the *item box* area the glimpse must cover to count (0 = any overlap).
    Returns bool (..., G, K).
    """
    g = np.asarray(glimpse_boxes, np.float32)[..., :, None, :]
    b = np.asarray(item_boxes, np.float32)[..., None, :, :]
    ih = np.clip(np.minimum(g[..., 2], b[..., 2]) - np.maximum(g[..., 0], b[..., 0]), 0, None)
    iw = np.clip(np.minimum(g[..., 3], b[..., 3]) - np.maximum(g[..., 1], b[..., 1]), 0, None)
    inter = ih * iw
    area = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    if min_overlap <= 0:
        return inter > 0
    return inter >= min_overlap * area


def class_names(config: ClutteredConfig, source=None):
    """Names of the target classes of a cluttered dataset: the items' names for "single" / "identify"
    (Fashion-MNIST names for the shipped sample or a folder whose path mentions "fashion", digits otherwise) and
    the sums "0" ... "18" for "sum"."""
    if config.task == "sum":
        return [str(i) for i in range(num_classes(config))]
    if source == "sample" or "fashion" in str(source or _idx.DEFAULT_DATA_DIR).lower():
        from saccade_zoo.data.sample import FASHION_MNIST_CLASSES

        return list(FASHION_MNIST_CLASSES)
    return [str(i) for i in range(NUM_SOURCE_CLASSES)]


def cluttered_split(split: str, source, num_examples: Optional[int], config: ClutteredConfig, seed: int,
                    verbose: int = 0) -> Dict[str, np.ndarray]:
    """One split of a cluttered dataset from ``source`` ("sample", or a folder of IDX files; None: the default
    folder): ``num_examples`` canvases (default: one per source item) of `generate_cluttered`."""
    items, labels = load_items(split, source)
    if verbose:
        print(f"Generating {num_examples or len(items)} cluttered {split} images ({config.task}) from "
              f"{len(items)} items ...")
    return generate_cluttered(items, labels, num_examples or len(items), config, seed=seed, verbose=verbose)
