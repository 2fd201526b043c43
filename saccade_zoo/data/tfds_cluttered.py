"""TFDS builder for cluttered Fashion-MNIST / MNIST (the RAM / DRAM / variational-saccading benchmark family).

Importing this module registers ``cluttered_fashion_mnist`` with ``tensorflow_datasets``. Items come from
MNIST-format IDX files in ``manual_dir`` (Fashion-MNIST or MNIST: ``train-images-idx3-ubyte[.gz]``,
``t10k-...``; see :mod:`saccade_zoo.data.idx`). If ``manual_dir`` is missing or holds no IDX files,
``/usr/share/datasets/fashion-mnist`` (Debian ``dataset-fashion-mnist``) is used when present.

The source split is kept: train images (main items *and* distractor pieces) come only from the train IDX
files, test images only from the t10k files. Generation is deterministic (``seed`` in the config).

Configs (``cluttered_fashion_mnist/<name>``), as in the papers:

* ``60px_1item_4distractors``: RAM's 60 x 60 cluttered set.
* ``100px_1item_8distractors``: RAM's 100 x 100 cluttered set.
* ``100px_2items_8distractors_identify``: DRAM / variational saccading two-item identification (multi-hot).
* ``100px_2items_8distractors_sum``: DRAM's two-digit sum (19 classes).

Features: ``image`` uint8 (H, W, 1); ``label`` ClassLabel (single / sum) or float32 (10,) multi-hot (identify);
``boxes`` float32 (num_items, 4) = (y0, x0, y1, x1) half-open pixel coords; ``item_labels`` int64 (num_items,).

Load offline::

    import saccade_zoo.data.tfds_cluttered  # registers the builder
    ds = tfds.load("cluttered_fashion_mnist/100px_1item_8distractors", split="train",
                   download_and_prepare_kwargs={"download_config":
                       tfds.download.DownloadConfig(manual_dir="/usr/share/datasets/fashion-mnist")})

For a quick, small build pass ``builder_kwargs={"num_train": 1000, "num_test": 200}`` (the config name gets a
``_1000train_200test`` suffix so it never mixes with a full build), or your own
:class:`ClutteredFashionMnistConfig`.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import tensorflow_datasets as tfds

from saccade_zoo.data import idx as _idx
from saccade_zoo.data.cluttered import ClutteredConfig, ClutteredGenerator, num_classes


class ClutteredFashionMnistConfig(tfds.core.BuilderConfig):
    """A named cluttered-dataset config.

    Args:
      cluttered: the :class:`~saccade_zoo.data.cluttered.ClutteredConfig`.
      num_train / num_test: examples per split (default: one per source item, 60000 / 10000 for (Fashion-)MNIST;
        every source item is the main item of exactly one example).
      seed: generation seed (the test split uses a different stream derived from it).
    """

    def __init__(self, *, cluttered: ClutteredConfig, num_train: Optional[int] = None,
                 num_test: Optional[int] = None, seed: int = 0, name: Optional[str] = None, **kwargs):
        name = name or cluttered.name
        kwargs.setdefault("version", tfds.core.Version("1.0.0"))
        kwargs.setdefault("description", f"{cluttered}")
        super().__init__(name=name, **kwargs)
        self.cluttered = cluttered
        self.num_train = num_train
        self.num_test = num_test
        self.seed = seed


_CONFIGS = [
    ClutteredFashionMnistConfig(cluttered=ClutteredConfig(canvas_size=60, num_items=1, num_distractors=4)),
    ClutteredFashionMnistConfig(cluttered=ClutteredConfig(canvas_size=100, num_items=1, num_distractors=8)),
    ClutteredFashionMnistConfig(cluttered=ClutteredConfig(canvas_size=100, num_items=2, num_distractors=8,
                                                          task="identify")),
    ClutteredFashionMnistConfig(cluttered=ClutteredConfig(canvas_size=100, num_items=2, num_distractors=8,
                                                          task="sum")),
]


class ClutteredFashionMnist(tfds.core.GeneratorBasedBuilder):
    """Cluttered Fashion-MNIST (or MNIST, from the IDX files you provide) on a canvas with distractor pieces."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = _CONFIGS
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put MNIST-format IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
        "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) in manual_dir, e.g. "
        "`sudo apt-get install dataset-fashion-mnist` and "
        "DownloadConfig(manual_dir='/usr/share/datasets/fashion-mnist')."
    )

    def __init__(self, *, config=None, num_train: Optional[int] = None, num_test: Optional[int] = None,
                 **kwargs):
        if num_train is not None or num_test is not None:
            if config is None:
                base = self.BUILDER_CONFIGS[0]
            elif isinstance(config, str):
                if config not in self.builder_configs:
                    raise ValueError(f"Unknown config {config!r}; known: {sorted(self.builder_configs)}.")
                base = self.builder_configs[config]
            else:
                base = config
            nt = base.num_train if num_train is None else num_train
            ns = base.num_test if num_test is None else num_test
            config = ClutteredFashionMnistConfig(
                cluttered=base.cluttered, num_train=nt, num_test=ns, seed=base.seed,
                name=f"{base.name}_{nt}train_{ns}test")
        super().__init__(config=config, **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        c: ClutteredConfig = self.builder_config.cluttered
        s = c.image_size
        if c.task == "identify":
            label = tfds.features.Tensor(shape=(10,), dtype=np.float32)
        else:
            label = tfds.features.ClassLabel(num_classes=num_classes(c))
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(s, s, 1), dtype=np.uint8),
                "label": label,
                "boxes": tfds.features.Tensor(shape=(c.num_items, 4), dtype=np.float32),
                "item_labels": tfds.features.Tensor(shape=(c.num_items,), dtype=np.int64),
            }),
            supervised_keys=("image", "label"),
            homepage="https://github.com/zalandoresearch/fashion-mnist",
            citation="Mnih et al. 2014 (RAM); Ba et al. 2015 (DRAM); Ramapuram et al. (variational saccading).",
        )

    def _source_dir(self, dl_manager) -> str:
        try:
            manual = os.fspath(dl_manager.manual_dir)
        except Exception:  # tfds raises when the manual dir does not exist
            manual = None
        for d in (manual, _idx.DEFAULT_DATA_DIR):
            if d and os.path.isdir(d):
                try:
                    _idx.find_idx_file(d, "train", "images")
                    return d
                except FileNotFoundError:
                    pass
        raise FileNotFoundError(
            f"No MNIST-format IDX files in manual_dir={manual!r} nor in {_idx.DEFAULT_DATA_DIR}. "
            + self.MANUAL_DOWNLOAD_INSTRUCTIONS)

    def _split_generators(self, dl_manager):
        src = self._source_dir(dl_manager)
        cfg = self.builder_config
        return {
            "train": self._generate_examples(src, "train", cfg.num_train, 2 * cfg.seed),
            "test": self._generate_examples(src, "test", cfg.num_test, 2 * cfg.seed + 1),
        }

    def _generate_examples(self, src, split, num, seed):
        items, labels = _idx.load_idx_split(src, split)
        c = self.builder_config.cluttered
        gen = ClutteredGenerator(items, labels, c, seed)
        n = len(items) if num is None else int(num)
        for i in range(n):
            ex = gen(i)
            image = np.clip(np.rint(ex["image"] * 255.0), 0, 255).astype(np.uint8)
            label = ex["label"] if c.task == "identify" else int(ex["label"])
            yield i, {"image": image, "label": label, "boxes": ex["boxes"], "item_labels": ex["item_labels"]}


__all__ = ["ClutteredFashionMnist", "ClutteredFashionMnistConfig"]
