"""Data layer of saccade_zoo: IDX readers, the shipped Fashion-MNIST sample, cluttered-item datasets,
ImageNet / folder pipelines and tiled-TIFF region reads for huge images.

Light modules (``idx``, ``sample``, ``cluttered``, ``megapixel``: the attention-sampling papers' megapixel task) are
imported here. Import the others explicitly:
``saccade_zoo.data.tfds_cluttered`` (registers the TFDS builder; imports tensorflow_datasets),
``saccade_zoo.data.imagenet``, ``saccade_zoo.data.folders``, ``saccade_zoo.data.tiled_tiff``.
This package imports no model code.
"""

from saccade_zoo.data import cluttered, idx, megapixel, sample
from saccade_zoo.data.cluttered import ClutteredConfig, cluttered_dataset, generate_cluttered, num_classes
from saccade_zoo.data.megapixel import MegapixelConfig, MegapixelGenerator, megapixel_arrays, megapixel_split
from saccade_zoo.data.idx import DEFAULT_DATA_DIR, load_idx_images, load_idx_labels, load_idx_split
from saccade_zoo.data.sample import load_sample

__all__ = [
    "cluttered", "idx", "megapixel", "sample",
    "MegapixelConfig", "MegapixelGenerator", "megapixel_arrays", "megapixel_split",
    "ClutteredConfig", "cluttered_dataset", "generate_cluttered", "num_classes",
    "DEFAULT_DATA_DIR", "load_idx_images", "load_idx_labels", "load_idx_split", "load_sample",
]
