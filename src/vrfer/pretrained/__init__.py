"""Trained models shipped inside the package: safetensors files whose metadata holds their config
(read by vrfer.models.registry.bundled_models), the int8 ONNX graphs made from them (vrfer.export.int8) and the face
detectors (vrfer.faces). Only data lives here, and the one name every command and the API default to."""

DEFAULT_MODEL = "vrfer-lower"   # the model every command and the Python API use unless told otherwise
