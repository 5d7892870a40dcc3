"""vrfer: facial expression recognition for people wearing VR headsets (lower-half faces).

After Georgescu & Ionescu (2019), "Recognizing Facial Expressions of Occluded Faces using CNNs".
"""

from .classes import CLASSES
from .errors import VrferError

__version__ = "0.1.0"
__all__ = ["CLASSES", "VrferError", "create_model", "list_models", "__version__"]


def __getattr__(name):
    # torch loads only when a model is asked for, so `vrfer --help` and `import vrfer.cli` stay fast
    if name in ("create_model", "list_models"):
        from . import models
        return getattr(models, name)
    raise AttributeError(f"module 'vrfer' has no attribute {name!r}")
