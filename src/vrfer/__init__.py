"""vrfer: facial expression recognition for people wearing VR headsets (lower-half faces).

After Georgescu & Ionescu (2019), "Recognizing Facial Expressions of Occluded Faces using CNNs".
"""

from .classes import CLASSES
from .errors import VrferError
from .models import create_model, list_models

__version__ = "0.1.0"
__all__ = ["CLASSES", "VrferError", "create_model", "list_models", "__version__"]
