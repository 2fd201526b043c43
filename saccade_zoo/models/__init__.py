"""The zoo's model families, one folder each (``models/<family>/``: the model(s), the family's own layers and loss
terms, and ``presets.py``, which registers the family's presets). Importing this package registers every family's
presets with `saccade_zoo.registry` and every model class with Keras.

Adding a family: see README.md, "Adding a model".
"""
from saccade_zoo.models.bagnet import presets as _bagnet_presets  # noqa: F401
from saccade_zoo.models.bagnet.backbone import BagNet
from saccade_zoo.models.base import GlimpseModel, ZooModel
from saccade_zoo.models.convnet import presets as _convnet_presets  # noqa: F401
from saccade_zoo.models.convnet.convnet import ConvNet
from saccade_zoo.models.dram import presets as _dram_presets  # noqa: F401
from saccade_zoo.models.dram.model import DRAM
from saccade_zoo.models.ram import presets as _ram_presets  # noqa: F401
from saccade_zoo.models.ram.model import RAM
from saccade_zoo.models.resnet import presets as _resnet_presets  # noqa: F401
from saccade_zoo.models.resnet.crops import CropResNet
from saccade_zoo.models.resnet.resnet import ResNet
from saccade_zoo.models.saccader import presets as _saccader_presets  # noqa: F401
from saccade_zoo.models.saccader.classifier import SaccaderWithClassifier
from saccade_zoo.models.saccader.saccader import BagNetGlimpseModel, PolicyClassifier, Saccader
from saccade_zoo.models.variational import presets as _variational_presets  # noqa: F401
from saccade_zoo.models.variational.model import VariationalSaccader

__all__ = ["BagNet", "BagNetGlimpseModel", "ConvNet", "CropResNet", "DRAM", "GlimpseModel", "PolicyClassifier", "RAM",
           "ResNet", "Saccader", "SaccaderWithClassifier", "VariationalSaccader", "ZooModel"]
