"""DRAM presets: cluttered 60x60 / 100x100 (one item; two-item identification and sum at 100x100) in Ba et al.'s
form (what x where, a context network), and ``dram_imagenet``, the Saccader authors' ImageNet DRAM."""
from saccade_zoo.models.bagnet.presets import GREY100, IMAGENET
from saccade_zoo.models.dram.model import DRAM
from saccade_zoo.models.ram.presets import GREY60, SUM
from saccade_zoo.registry import register_preset

# Ba et al.'s layout at the scale of the RAM presets: 12x12 views (as many and as wide as RAM's retina, for a fair
# comparison), a glimpse conv net of kernels 5, 3, 3 (the paper's) at half the paper's widths (32-32-64, not
# 64-64-128: the paper's widths made a training step 8x RAM's on one CPU core, 85 vs 10 ms forward + backward at
# batch 32; these, 42 ms) to 256 units times a 256-unit where, LSTMs of 256 and 256, a context net on a 24x24
# down-sampled image (16-32-8 filters, so its dense layer stays small).
CLUTTERED = dict(glimpse_size=12, where="multiply", encoder="convnet", glimpse_filters=(32, 32, 64),
                 glimpse_kernels=(5, 3, 3), glimpse_units=256, units=(256, 256), context="network", context_size=24,
                 context_filters=(16, 32, 8), context_kernels=(5, 3, 3), baseline="learned", location_std=0.1)
SIXTY = dict(CLUTTERED, image_shape=(60, 60, 1), sides=(12, 24, 48))
HUNDRED = dict(CLUTTERED, image_shape=(100, 100, 1), sides=(12, 24, 48, 96))

register_preset("dram_cluttered60", DRAM, "DRAM on 60x60 cluttered images, one item, 8 glimpses (Ba et al. 2015: what x "
                "where, two LSTMs, a context network)", GREY60, task="single", num_classes=10, num_glimpses=8, **SIXTY)
register_preset("dram_cluttered100", DRAM, "DRAM on 100x100 cluttered images, one item, 8 glimpses", GREY100,
                task="single", num_classes=10, num_glimpses=8, **HUNDRED)
register_preset("dram_cluttered100_identify", DRAM, "DRAM on 100x100 cluttered images: identify two items (10 sigmoid "
                "outputs, multi-hot labels)", GREY100, task="identify", num_classes=10, num_glimpses=8,
                activation="sigmoid", **HUNDRED)
register_preset("dram_cluttered100_sum", DRAM, "DRAM on 100x100 cluttered images: the sum of two items, 19 classes",
                GREY100, class_names=SUM, task="sum", num_classes=19, num_glimpses=8, **HUNDRED)
# The Saccader authors' DRAM (their Table Supp.1): 45,610,219 parameters with 1001 classes.
register_preset("dram_imagenet", DRAM, "The Saccader authors' ImageNet DRAM: 77/150/224 px views + position channels "
                "into a ResNet-v2-50, LSTMs of 1024, 8 glimpses, 1001 classes (45,610,219 parameters)", IMAGENET,
                image_shape=(224, 224, 3), num_classes=1001, num_glimpses=8, glimpse_size=77, sides=(77, 150, 224),
                where="channels", encoder="resnet50v2", units=(1024, 1024), context="glimpse", baseline="batch_mean",
                location_std=0.1)
