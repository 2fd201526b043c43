"""saccade_zoo: Keras 3 hard-attention image classifiers (Saccader, variational saccading, RAM, DRAM).

`import saccade_zoo` registers every layer and model under the package name "saccade_zoo", so
`keras.models.load_model(path)` (with the default safe_mode=True) works afterwards.

    import saccade_zoo
    model = saccade_zoo.build("saccader_imagenet")
    saccade_zoo.list_models()
"""
from saccade_zoo import layers  # noqa: F401  (registers the layers)
from saccade_zoo.models.bagnet.backbone import BagNet
from saccade_zoo.models.saccader.saccader import PolicyClassifier, Saccader
from saccade_zoo.registry import build, get_preset, list_models, preprocess

__version__ = "0.1.0"
__all__ = ["BagNet", "PolicyClassifier", "Saccader", "build", "get_preset", "list_models", "preprocess"]
