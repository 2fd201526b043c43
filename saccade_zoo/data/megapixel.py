"""Megapixel MNIST: the large-canvas majority-class task of attention sampling and Iterative Patch Selection.

What the papers used
--------------------
Attention sampling (ATS; Katharopoulos & Fleuret, ICML 2019; generator ``scripts/make_mnist.py`` of
idiap/attention-sampling) and Iterative Patch Selection (IPS; Bergner et al., ICLR 2023, which reuses that
generator): a 1500 x 1500 canvas holding 5 MNIST digits at their native 28 x 28 size, 3 of one class (the target;
the label) and 2 of other classes, plus 50 28 x 28 "noise" patches of straight lines. 5000 training images (made
from MNIST's training digits) and 1000 test images (from its test digits). As read from that script:

* Noise bank, made once per dataset: 50 patterns. Pattern ``i`` starts from one line out of the patch corner
  (0, 0): its slope is ``a = tan(u * pi / 2.5)`` with ``u ~ U(0, 1)`` (angles in [0, 72) degrees); 56 evenly spaced
  points ``r`` in ``[0, min(27.49, 27.49 / a)]`` and ``c = a * r`` are rounded to pixels ``(row r, column c)``.
  A second set is a shuffled copy of these 50 single-line patterns, each mirrored left-right (columns reversed,
  so its line leaves corner (0, 27) instead) with probability 0.33 and then -- independently, again left-right
  with probability 0.33. (The script means to flip along two different axes but flips the same one twice; the
  net effect, reproduced here, is one left-right mirror with probability 2 * 0.33 * 0.67 = 0.4422, the XOR of
  two 0.33 coins.) Pattern ``i`` is the union of line ``i`` and shuffled line ``i``, each of its pixels multiplied
  by its own ``U(0.8, 1.0)`` intensity: two straight lines out of patch corners.
* Per image: the target class is uniform over the 10 classes; 3 target digits are drawn uniformly *with
  replacement* from that class (a digit may repeat) and 2 more with replacement from all digits of other classes
  (they may share a class with each other). Digit top-left corners are ``round(U(0, 1) * (H - 28))``, redrawn
  while the digit overlaps one already placed (|dy| < 28 and |dx| < 28; touching is allowed).
* 50 noise placements per image, each a bank pattern picked uniformly (with replacement) at the integer top-left
  corner ``int(U(0, 1) * (H - 56) + 28)``, i.e. uniform in [28, H - 28) on both axes (no rejection).
* Composition at full resolution: a zero canvas; the digits are pasted (overwriting) first, then the 50 noise
  patches, each overwriting its whole 28 x 28 square -- so noise, zeros included, can hide parts of digits. The
  result is converted by ``(x * 255).astype(uint8)`` (truncation, not rounding).
* Low resolution (the ATS CNN baseline, scale 0.12: 1500 -> 180): every digit and noise patch is rescaled on its own
  (``skimage`` rescale, order 1, anti-aliased) and pasted at ``int(0.12 * position)`` on a small canvas.
* The training set is made with the script's seed + 1 (the seed is offset by the train flag), the test set with
  the seed itself.

What is implemented here
------------------------
Example ``i`` is made from ``numpy.random.default_rng([seed, i])`` only (plus the noise bank, drawn once from its
own stream ``default_rng([seed, 2**31 + 1])``), so it does not depend on the order or parallelism of generation
(and no example is bit-identical to the script's, whose numbers come from one sequential stream). The default
:class:`MegapixelConfig` follows the facts above:

1. Target class: uniform over the classes present in ``labels`` (all 10 for (Fashion-)MNIST). ``num_target`` (3)
   items of that class, with replacement (``target_replace=True``, as ATS; ``False`` draws them without
   replacement when the class has enough items), then ``num_items - num_target`` (2) items with replacement from
   all items of *other* classes (they can share a class with each other, never with the target). With
   ``distinct_others=True`` the non-target items have pairwise distinct classes (not ATS).
2. Item positions: ``rint(U(0, 1) * (canvas_size - item_size))`` per axis, redrawn while overlapping a placed
   item, as ATS. If that gets stuck (only on nearly full canvases) the whole placement is retried, and finally
   items go to random cells of a ``canvas_size // item_size`` grid (always possible once the config validates).
3. Noise bank (:func:`noise_bank`): ``noise_bank_size`` (50) patterns built as above (generalised to a
   ``noise_size`` side: points on ``[0, min(s - 0.51, (s - 0.51) / a)]``, ``2 * s`` of them; ``noise_lines - 1``
   shuffled, possibly mirrored copies joined to the first line, 1 of them by default). Each canvas places
   ``num_noise`` (50) bank patterns picked uniformly with replacement at top-left corners uniform in
   ``[noise_size, canvas_size - noise_size)`` (so patches stay inside the canvas). ``noise_bank_size=None``
   (not ATS) draws a fresh pattern per placement with :func:`noise_pattern` (independent line slopes).
4. Combination (``combine``): "paste" (default, as ATS) -- items pasted first, then the noise squares in order,
   each overwriting the whole square it covers; "max" (not ATS) -- the pixel-wise maximum of all items and noise
   patterns (nothing is hidden).
5. Items are float in [0, 1] (uint8 / 255); an ``item_size`` other than the source's side resizes items bilinearly
   (as :mod:`saccade_zoo.data.cluttered`). :func:`to_uint8` -- used for the TIFF files and
   :func:`megapixel_arrays` -- truncates ``x * 255`` as ATS (item values k / 255 come back exactly as k; noise
   intensities in [0.8, 1) become 204-254).
6. Low resolution differs from ATS: ``megapixel_arrays(..., downsample=180)`` area-averages the whole uint8
   full-resolution canvas (as ``tf.image.resize(method="area")``) instead of rescaling and pasting each patch on
   its own, so overlaps and patch borders are resolved at full resolution first.
7. :func:`megapixel_split` offsets the seed by 1 for the training split, as ATS (so the splits have different
   noise banks even with one seed).

Outputs (:class:`MegapixelGenerator`): ``image`` float32 (H, W, 1) in [0, 1]; ``label`` int64 target class;
``boxes`` float32 (num_items, 4) ``(y0, x0, y1, x1)`` half-open pixel boxes of the items (the squares they were
pasted into, target items first); ``item_labels`` int64 (num_items,) (the first ``num_target`` equal ``label``);
``noise_boxes`` float32 (num_noise, 4) the squares noise patterns were placed in (in pasting order);
``noise_ids`` int64 (num_noise,) the bank pattern of each placement (-1 with ``noise_bank_size=None``).

On disk, :func:`write_megapixel_tiffs` writes the same layout as
:func:`saccade_zoo.data.tiled_tiff.write_cluttered_tiffs` (uint8 tiled pyramidal TIFFs + ``labels.json``), read
back with :func:`saccade_zoo.data.tiled_tiff.read_cluttered_tiffs` and ``TiledImage``. In memory,
:func:`megapixel_arrays` gives uint8 arrays, optionally area-downsampled one canvas at a time.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

import numpy as np

from saccade_zoo.data.cluttered import NUM_SOURCE_CLASSES, _validate_items, bilinear_resize, load_items

COMBINE_MODES = ("paste", "max")
SPLIT_SIZES = {"train": 5000, "test": 1000}  # ATS / IPS
NUM_CLASSES = NUM_SOURCE_CLASSES
MAX_ANGLE = np.pi / 2.5  # line slopes are tan(U(0, MAX_ANGLE))
FLIP_PROB = 0.33  # each of the two left-right mirror coins of a shuffled line (net mirror probability 0.4422)
INTENSITY_RANGE = (0.8, 1.0)  # per-pixel intensity of noise lines
_BANK_STREAM = 2**31 + 1  # rng stream of the noise bank (cluttered uses 2**31 for its item permutation)


@dataclasses.dataclass(frozen=True)
class MegapixelConfig:
    """Parameters of a megapixel-MNIST dataset (defaults: ATS / IPS).

    Attributes:
      canvas_size: side of the square canvas (1500).
      num_items: items per canvas (5).
      num_target: items of the target (majority) class (3); must be a strict majority of ``num_items``.
      num_noise: noise patterns per canvas (50); 0 turns noise off. Needs ``canvas_size > 2 * noise_size``.
      item_size: side items are pasted at (28 = native MNIST; other values resize items bilinearly).
      noise_size: side of a noise pattern (28); also the margin its top-left corner keeps from the canvas border.
      noise_lines: corner-anchored lines per noise pattern (2).
      noise_bank_size: patterns in the per-seed bank canvases pick from (50); None draws a fresh one per placement.
      target_replace: draw the target items with replacement (True, as ATS; a digit may repeat).
      distinct_others: the non-target items have pairwise distinct classes (default False, as ATS).
      combine: "paste" (items first, then noise squares overwrite them; ATS) or "max" (pixel-wise maximum).
    """

    canvas_size: int = 1500
    num_items: int = 5
    num_target: int = 3
    num_noise: int = 50
    item_size: int = 28
    noise_size: int = 28
    noise_lines: int = 2
    noise_bank_size: Optional[int] = 50
    target_replace: bool = True
    distinct_others: bool = False
    combine: str = "paste"

    def __post_init__(self):
        if self.canvas_size < 1:
            raise ValueError(f"canvas_size must be >= 1, got {self.canvas_size}.")
        if self.num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {self.num_items}.")
        if not 1 <= self.num_target <= self.num_items:
            raise ValueError(f"num_target must be in [1, num_items={self.num_items}], got {self.num_target}.")
        if self.num_target <= self.num_items - self.num_target:
            raise ValueError(
                f"num_target={self.num_target} of num_items={self.num_items} is no strict majority: need num_target "
                f"> num_items - num_target (= {self.num_items - self.num_target}) so the label is well defined.")
        if self.distinct_others and self.num_items - self.num_target > NUM_SOURCE_CLASSES - 1:
            raise ValueError(f"distinct_others needs num_items - num_target <= {NUM_SOURCE_CLASSES - 1}, got "
                             f"{self.num_items - self.num_target}.")
        if not 1 <= self.item_size <= self.canvas_size:
            raise ValueError(f"item_size {self.item_size} must be in [1, canvas_size={self.canvas_size}].")
        fit = (self.canvas_size // self.item_size) ** 2
        if self.num_items > fit:
            raise ValueError(
                f"{self.num_items} items of {self.item_size}px cannot fit without overlap on a {self.canvas_size}px "
                f"canvas (at most {fit}); use a larger canvas_size or fewer / smaller items.")
        if self.num_noise < 0:
            raise ValueError(f"num_noise must be >= 0, got {self.num_noise}.")
        if self.num_noise:
            if self.noise_size < 1:
                raise ValueError(f"noise_size must be >= 1, got {self.noise_size}.")
            if self.canvas_size <= 2 * self.noise_size:
                raise ValueError(
                    f"noise patches keep a noise_size ({self.noise_size}px) margin: canvas_size {self.canvas_size} "
                    f"must exceed 2 * noise_size = {2 * self.noise_size} (or set num_noise=0).")
            if self.noise_lines < 1:
                raise ValueError(f"noise_lines must be >= 1, got {self.noise_lines}.")
            if self.noise_bank_size is not None and self.noise_bank_size < 1:
                raise ValueError(f"noise_bank_size must be >= 1 or None, got {self.noise_bank_size}.")
        if self.combine not in COMBINE_MODES:
            raise ValueError(f"combine must be one of {COMBINE_MODES}, got {self.combine!r}.")

    @property
    def image_size(self) -> int:
        """Side of the generated images."""
        return int(self.canvas_size)

    @property
    def num_others(self) -> int:
        return self.num_items - self.num_target

    @property
    def name(self) -> str:
        """Short name, e.g. ``megapixel_1500px_5items_3target_50noise`` (+ non-default options)."""
        s = f"megapixel_{self.canvas_size}px_{self.num_items}items_{self.num_target}target_{self.num_noise}noise"
        if self.item_size != 28:
            s += f"_item{self.item_size}"
        if self.num_noise and self.noise_size != 28:
            s += f"_noise{self.noise_size}px"
        if self.num_noise and self.noise_lines != 2:
            s += f"_{self.noise_lines}lines"
        if self.num_noise and self.noise_bank_size != 50:
            s += f"_bank{self.noise_bank_size or 'fresh'}"
        if not self.target_replace:
            s += "_distincttargets"
        if self.distinct_others:
            s += "_distinct"
        if self.combine != "paste":
            s += f"_{self.combine}"
        return s


def corner_line(slope: float, size: int = 28) -> np.ndarray:
    """(size, size) bool mask of the ATS noise line out of corner (0, 0) with ``slope`` >= 0 (columns per row):
    ``2 * size`` points ``r`` evenly spaced on ``[0, min(L, L / slope)]``, ``L = size - 0.51`` (27.49 at 28), and
    ``c = slope * r``, rounded to pixels ``(r, c)``. Slope 0 runs down column 0; large slopes hug row 0."""
    if slope < 0:
        raise ValueError(f"slope must be >= 0, got {slope}.")
    length = size - 0.51
    end = length if slope <= 1 else length / slope  # = min(L, L / slope), also for slope 0
    r = np.linspace(0.0, end, 2 * size)
    rows = np.clip(np.rint(r), 0, size - 1).astype(np.int64)
    cols = np.clip(np.rint(slope * r), 0, size - 1).astype(np.int64)
    mask = np.zeros((size, size), bool)
    mask[rows, cols] = True
    return mask


def _mirror_coins(rng: np.random.Generator, n: int) -> np.ndarray:
    """ATS's two left-right flips of the same axis, each with probability FLIP_PROB: mirrored iff exactly one."""
    return (rng.random(n) < FLIP_PROB) ^ (rng.random(n) < FLIP_PROB)


def _intensities(rng: np.random.Generator, masks: np.ndarray) -> np.ndarray:
    return (masks * rng.uniform(*INTENSITY_RANGE, size=masks.shape)).astype(np.float32)


def noise_bank(rng: np.random.Generator, num_patterns: int = 50, size: int = 28, num_lines: int = 2) -> np.ndarray:
    """(num_patterns, size, size) float32 bank of ATS noise patterns (see the module docstring).

    Draws, in this order: ``num_patterns`` slopes ``tan(U(0, 1) * pi / 2.5)`` -> single lines out of corner (0, 0)
    (:func:`corner_line`); for each further line (``num_lines - 1``, one by default) a permutation of the single
    lines and two left-right mirror coins per pattern (mirrored iff exactly one coin, each with probability
    ``FLIP_PROB``); finally per-pixel intensities ``U(0.8, 1.0)`` that multiply the union of the lines."""
    if num_patterns < 1 or size < 1 or num_lines < 1:
        raise ValueError(f"noise_bank needs positive num_patterns, size, num_lines; got {num_patterns}, {size}, "
                         f"{num_lines}.")
    slopes = np.tan(rng.random(num_patterns) * MAX_ANGLE)
    lines = np.stack([corner_line(a, size) for a in slopes])
    masks = lines.copy()
    for _ in range(num_lines - 1):
        other = lines[rng.permutation(num_patterns)]
        mirror = _mirror_coins(rng, num_patterns)
        other[mirror] = other[mirror][:, :, ::-1]
        masks |= other
    return _intensities(rng, masks)


def noise_pattern(rng: np.random.Generator, size: int = 28, num_lines: int = 2) -> np.ndarray:
    """One (size, size) float32 noise pattern drawn on its own (``noise_bank_size=None``; not ATS): like a
    :func:`noise_bank` pattern, but every line has its own slope (a bank pairs each line with a shuffled copy of
    another bank line). The first line leaves corner (0, 0); each further one is mirrored left-right with the
    bank's probability (XOR of two ``FLIP_PROB`` coins)."""
    slopes = np.tan(rng.random(num_lines) * MAX_ANGLE)
    mirror = _mirror_coins(rng, num_lines)
    mask = np.zeros((size, size), bool)
    for k, a in enumerate(slopes):
        line = corner_line(a, size)
        mask |= line[:, ::-1] if (k and mirror[k]) else line
    return _intensities(rng, mask)


def _overlaps(box, boxes) -> bool:
    return any(not (box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1]) for b in boxes)


class MegapixelGenerator:
    """Makes example ``i`` deterministically from ``(items, labels, config, seed)``; ``gen(i)`` -> dict (see the
    module docstring). One canvas (``canvas_size**2`` float32, 9 MB at 1500) is allocated per call."""

    def __init__(self, items, labels, config: Optional[MegapixelConfig] = None, seed: int = 0):
        self.config = MegapixelConfig() if config is None else config
        self.seed = int(seed)
        self.items, self.labels = _validate_items(items, labels)
        c = self.config
        self.classes = np.unique(self.labels)
        need = 1 + (c.num_others if c.distinct_others else min(c.num_others, 1))
        if len(self.classes) < need:
            raise ValueError(f"labels hold {len(self.classes)} class(es) {self.classes.tolist()}; this config needs "
                             f"at least {need} (a target class and other classes for the non-target items).")
        self._by_class = {int(k): np.flatnonzero(self.labels == k) for k in self.classes}
        self._resize = self.items.shape[1:] != (c.item_size, c.item_size)
        if c.num_noise and c.noise_bank_size is not None:
            rng = np.random.default_rng([self.seed, _BANK_STREAM])
            self.noise_bank = noise_bank(rng, c.noise_bank_size, c.noise_size, c.noise_lines)
        else:
            self.noise_bank = None

    def _item(self, j: int) -> np.ndarray:
        if not self._resize:
            return self.items[j]
        return np.clip(bilinear_resize(self.items[j], self.config.item_size), 0, 1)

    def _choose_items(self, rng: np.random.Generator) -> Tuple[int, np.ndarray]:
        c = self.config
        target = int(self.classes[rng.integers(len(self.classes))])
        pool = self._by_class[target]
        pos = rng.choice(pool, size=c.num_target, replace=c.target_replace or len(pool) < c.num_target)
        if not c.num_others:
            return target, pos.astype(np.int64)
        if c.distinct_others:
            other_classes = rng.choice(self.classes[self.classes != target], size=c.num_others, replace=False)
            neg = np.array([rng.choice(self._by_class[int(k)]) for k in other_classes])
        else:
            others = np.flatnonzero(self.labels != target)
            neg = rng.choice(others, size=c.num_others, replace=True)
        return target, np.concatenate([pos, neg]).astype(np.int64)

    def _place(self, rng: np.random.Generator):
        c = self.config
        s, span = c.item_size, c.canvas_size - c.item_size
        for _restart in range(10):
            boxes = []
            for _ in range(c.num_items):
                for _attempt in range(1000):
                    y, x = (int(v) for v in np.rint(rng.random(2) * span))  # ATS: round(U(0, 1) * (H - 28))
                    box = (y, x, y + s, x + s)
                    if not _overlaps(box, boxes):
                        boxes.append(box)
                        break
                else:
                    break
            if len(boxes) == c.num_items:
                return boxes
        # Nearly full canvas: random cells of the grid (fits, as the config validated), one random global offset.
        g = c.canvas_size // s
        cells = rng.choice(g * g, size=c.num_items, replace=False)
        oy, ox = (int(v) for v in rng.integers(0, c.canvas_size - g * s + 1, size=2))
        return [(oy + int(k // g) * s, ox + int(k % g) * s, oy + int(k // g) * s + s, ox + int(k % g) * s + s)
                for k in cells]

    def __call__(self, i: int) -> Dict[str, np.ndarray]:
        c = self.config
        rng = np.random.default_rng([self.seed, int(i)])
        target, idx = self._choose_items(rng)
        boxes = self._place(rng)
        ns = c.noise_size
        # ATS: int(U(0, 1) * (H - 56) + 28), i.e. uniform integers in [28, H - 28) for 28 px patches.
        noise_pos = (rng.random((c.num_noise, 2)) * (c.canvas_size - 2 * ns)).astype(np.int64) + ns
        if self.noise_bank is not None:
            noise_ids = rng.integers(len(self.noise_bank), size=c.num_noise).astype(np.int64)
            patterns = [self.noise_bank[k] for k in noise_ids]
        else:
            noise_ids = np.full((c.num_noise,), -1, np.int64)
            patterns = [noise_pattern(rng, ns, c.noise_lines) for _ in range(c.num_noise)]
        canvas = np.zeros((c.canvas_size, c.canvas_size), np.float32)
        paste = c.combine == "paste"
        for j, (y, x, y1, x1) in zip(idx, boxes):  # items first ...
            region = canvas[y:y1, x:x1]
            if paste:
                region[...] = self._item(int(j))
            else:
                np.maximum(region, self._item(int(j)), out=region)
        for (y, x), p in zip(noise_pos, patterns):  # ... then noise, in order (ATS: overwriting the items)
            region = canvas[y:y + ns, x:x + ns]
            if paste:
                region[...] = p
            else:
                np.maximum(region, p, out=region)
        noise_boxes = np.concatenate([noise_pos, noise_pos + ns], axis=1).astype(np.float32).reshape(-1, 4)
        return {
            "image": canvas[..., None],
            "label": np.int64(target),
            "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
            "item_labels": self.labels[idx].astype(np.int64),
            "noise_boxes": noise_boxes,
            "noise_ids": noise_ids,
        }


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8 0-255 by truncating ``x * 255`` as ATS's ``(x * 255).astype(np.uint8)`` (the
    quantisation of the TIFF files and :func:`megapixel_arrays`). Item values k / 255 map back to k exactly."""
    return (np.clip(np.asarray(image, np.float32), 0, 1) * np.float32(255)).astype(np.uint8)


def _progbar(n: int, verbose: int, unit_name: str = "image"):
    if not verbose:
        return None
    import keras
    return keras.utils.Progbar(n, verbose=verbose, unit_name=unit_name)


def write_megapixel_tiffs(out_dir, items, labels, num_examples: int, config: Optional[MegapixelConfig] = None,
                          seed: int = 0, tile_size: int = 256, verbose: int = 0) -> str:
    """Write megapixel-MNIST examples as uint8 tiled pyramidal TIFFs plus ``labels.json``.

    Same layout as :func:`saccade_zoo.data.tiled_tiff.write_cluttered_tiffs` (``out_dir/00000.tif, ...``; the labels
    file holds the config, the seed, ``"dataset": "megapixel"`` and per example the file name, integer label, item
    boxes and item labels), so :func:`saccade_zoo.data.tiled_tiff.read_cluttered_tiffs` reads it back. Pixels are
    quantised by :func:`to_uint8` (truncation, as ATS). One example is in memory at a time. Returns ``out_dir``.
    """
    from saccade_zoo.data.tiled_tiff import write_example_tiffs

    config = MegapixelConfig() if config is None else config
    return write_example_tiffs(out_dir, MegapixelGenerator(items, labels, config, seed), num_examples, config, seed,
                               tile_size, verbose, to_uint8=to_uint8, extra_meta={"dataset": "megapixel"})


def megapixel_arrays(items, labels, num_examples: int, config: Optional[MegapixelConfig] = None, seed: int = 0,
                     downsample: Optional[int] = None, verbose: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """``num_examples`` megapixel-MNIST images in memory: ``(images uint8 (N, S, S, 1), labels int64 (N,))``.

    ``downsample=None`` keeps the full canvas (S = canvas_size; 2.25 MB per 1500 x 1500 image), quantised by
    :func:`to_uint8` (truncation, as ATS). ``downsample=S`` area-averages each canvas to S x S (e.g. 180: the size
    of the low-resolution CNN baseline of ATS): the uint8 full canvas (what the TIFF files hold) is resized with
    the weights of :func:`saccade_zoo.layers.resize.area_matrix` (as ``AreaResize`` /
    ``tf.image.resize(method="area")``) and rounded back to uint8. This is not how ATS made its low-resolution
    images (each digit and noise patch rescaled on its own and pasted at ``int(0.12 * position)``); see the module
    docstring. Only one full canvas is in memory at a time.
    """
    if num_examples < 0:
        raise ValueError(f"num_examples must be >= 0, got {num_examples}.")
    config = MegapixelConfig() if config is None else config
    gen = MegapixelGenerator(items, labels, config, seed)
    c = config.canvas_size
    side = c if downsample is None else int(downsample)
    if side < 1:
        raise ValueError(f"downsample must be a positive side in pixels or None, got {downsample}.")
    rows = None
    if side != c:
        from saccade_zoo.layers.resize import area_matrix

        rows = area_matrix(c, side).astype(np.float32)  # (side, c); square canvas: the same for columns
    images = np.zeros((num_examples, side, side, 1), np.uint8)
    out_labels = np.zeros((num_examples,), np.int64)
    bar = _progbar(num_examples, verbose)
    for i in range(num_examples):
        ex = gen(i)
        full = to_uint8(ex["image"][..., 0])
        if rows is None:
            images[i, ..., 0] = full
        else:
            small = rows @ full.astype(np.float32) @ rows.T  # 0-255 scale
            images[i, ..., 0] = np.clip(np.rint(small), 0, 255).astype(np.uint8)
        out_labels[i] = ex["label"]
        if bar is not None and ((i + 1) % 100 == 0 or i + 1 == num_examples):
            bar.update(i + 1)
    return images, out_labels


def megapixel_split(split: str, source="sample", num_examples: Optional[int] = None,
                    config: Optional[MegapixelConfig] = None, seed: int = 0, downsample: Optional[int] = None,
                    verbose: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """One split of megapixel MNIST from ``source`` ("sample", an IDX folder, or None for the default folder):
    :func:`megapixel_arrays` of ``num_examples`` images (default: 5000 train / 1000 test, as ATS / IPS) made only
    from that split's items. As ATS, the training split uses ``seed + 1`` and the test split ``seed``, so the two
    splits get different noise banks and example streams from one ``seed``."""
    if split not in SPLIT_SIZES:
        raise ValueError(f"split must be one of {tuple(SPLIT_SIZES)}, got {split!r}.")
    items, labels = load_items(split, source)
    n = SPLIT_SIZES[split] if num_examples is None else int(num_examples)
    if verbose:
        print(f"Generating {n} megapixel-MNIST {split} images from {len(items)} items ...")
    split_seed = int(seed) + (split == "train")
    return megapixel_arrays(items, labels, n, config, seed=split_seed, downsample=downsample, verbose=verbose)


def megapixel_examples(split: str, source="sample", num_examples: Optional[int] = None,
                       config: Optional[MegapixelConfig] = None, seed: int = 0, verbose: int = 0) -> Dict[str, object]:
    """One split for training and evaluation without holding the canvases: ``{"images": GeneratedImages (N, S, S, 1)
    float32 in [0, 1] made on demand (quantised by :func:`to_uint8`, as the TIFF files hold them), "labels" int64
    (N,), "boxes" float32 (N, num_items, 4)}`` (items, splits and seeds as :func:`megapixel_split`). The labels and
    boxes are found by generating every example once (one canvas in memory at a time)."""
    from saccade_zoo.data.inputs import GeneratedImages

    if split not in SPLIT_SIZES:
        raise ValueError(f"split must be one of {tuple(SPLIT_SIZES)}, got {split!r}.")
    items, labels = load_items(split, source)
    n = SPLIT_SIZES[split] if num_examples is None else int(num_examples)
    config = MegapixelConfig() if config is None else config
    gen = MegapixelGenerator(items, labels, config, int(seed) + (split == "train"))
    out_labels = np.zeros((n,), np.int64)
    boxes = np.zeros((n, config.num_items, 4), np.float32)
    bar = _progbar(n, verbose)
    for i in range(n):
        ex = gen(i)
        out_labels[i], boxes[i] = ex["label"], ex["boxes"]
        if bar is not None and ((i + 1) % 100 == 0 or i + 1 == n):
            bar.update(i + 1)

    def quantised(i):
        return {"image": to_uint8(gen(i)["image"]).astype(np.float32) / 255.0}

    size = config.canvas_size
    return {"images": GeneratedImages(quantised, n, (size, size, 1)), "labels": out_labels, "boxes": boxes}
