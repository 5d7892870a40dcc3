"""Model registry: every architecture and every bundled trained model, created by name.

    >>> import vrfer
    >>> m = vrfer.create_model("vgg-face", pretrained=False)   # architecture, fresh weights
    >>> m = vrfer.create_model("vrfer-lower")            # bundled trained model (weights inside the package)
    >>> m.cfg.input_mode, m.cfg.image_size
"""

from . import compact, efficientnet, vgg  # noqa: F401,E402  (each registers its architectures on import)
from .registry import (DEFAULT_MODEL, ModelConfig, ResolvedModel, create_model, get_config, list_models,
                       load_checkpoint, register, resolve_model, save_model)

__all__ = ["DEFAULT_MODEL", "ModelConfig", "ResolvedModel", "create_model", "get_config", "list_models",
           "load_checkpoint", "register", "resolve_model", "save_model"]
