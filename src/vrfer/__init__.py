"""vrfer: facial expression recognition for people wearing VR headsets (lower-half faces).

After Georgescu & Ionescu (2019), "Recognizing Facial Expressions of Occluded Faces using CNNs".

The public API, importable from the top (each name lives in the module shown; loaded on first use, so that
`import vrfer` and `vrfer --help` do not load PyTorch):

    from vrfer import Recognizer                 # photos, videos, webcams -> faces and expressions (recognizer)
    from vrfer import load_model                 # a model spec -> what runs it: config, weights, backend (loader.resolve)
    from vrfer import create_model, list_models  # nn.Modules by name, timm-style (models)
"""

from .classes import CLASSES
from .errors import VrferError
from .lazy import lazy_names

__version__ = "0.1.0"

# public name -> (module, attribute). No name here is also a submodule's (evaluate, explain ...): after
# `import vrfer.evaluate` the package attribute would be the module, not the function.
_API = {
    "Recognizer": ("recognizer", "Recognizer"),
    "load_model": ("inference.loader", "resolve"),
    "create_model": ("models", "create_model"),
    "list_models": ("models", "list_models"),
    "save_model": ("models", "save_model"),
    "model_fingerprint": ("fingerprint", "model_fingerprint"),
    "evaluate_folder": ("evaluate", "evaluate_folder"),
    "adapt_folder": ("personal.adapt", "adapt_folder"),
    "export_model": ("export", "export_model"),
    "Profile": ("personal.calibration", "Profile"),
    "load_profile": ("personal.profile_check", "check_profile"),
}

__all__ = ["CLASSES", "VrferError", "__version__", "Recognizer", "load_model", "create_model", "list_models",
           "save_model", "model_fingerprint", "evaluate_folder", "adapt_folder", "export_model", "Profile",
           "load_profile"]


__getattr__, __dir__ = lazy_names(__name__, globals(), _API)
