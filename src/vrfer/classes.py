"""Class sets: the names a model answers with, in its output order.

CLASSES is FER+'s order, the default of every model and the order the data set readers give their labels in
(AffectNet numbers its classes differently; its reader maps onto this order). Other class sets are registered by
name (`register_class_set`); a recipe names one (`classes = "ferplus8"`, or a list of names) and the model it
trains carries the names in its config (`model.cfg.classes`).
"""

from __future__ import annotations

from .errors import VrferError

CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
NUM_CLASSES = len(CLASSES)
CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}

# spellings other data sets and people use for vrfer's classes (labels.csv's label_name, `vrfer calibrate happy=...`)
ALIASES = {"happy": "happiness", "joy": "happiness", "sad": "sadness", "angry": "anger", "surprised": "surprise",
           "disgusted": "disgust", "fearful": "fear", "afraid": "fear", "scared": "fear", "calm": "neutral"}

# name -> class names in output order; the first is the default
CLASS_SETS: dict[str, tuple[str, ...]] = {"ferplus8": CLASSES}


def class_name(text: str) -> str:
    """A class as a person may spell it -> vrfer's name ("Happy" -> "happiness"); unknown words come back
    lower-cased, for the caller to refuse."""
    name = text.strip().lower()
    return ALIASES.get(name, name)


def _checked(names, where: str) -> tuple[str, ...]:
    if isinstance(names, str) or not all(isinstance(n, str) and n.strip() for n in names):
        raise VrferError(f"{where}: a class set is a list of class names, got {names!r}")
    names = tuple(names)
    if len(names) < 2 or len(set(names)) < len(names):
        raise VrferError(f"{where}: a class set needs at least 2 different class names, got {list(names)}")
    return names


def register_class_set(name: str, names) -> tuple[str, ...]:
    """Make `names` (class names in output order) known as class set `name`; returns them. Registering a name
    again is allowed only with the same names."""
    if not isinstance(name, str) or not name.strip():
        raise VrferError(f"class set name must be a non-empty string, got {name!r}")
    names = _checked(names, f"class set {name!r}")
    if CLASS_SETS.get(name, names) != names:
        raise VrferError(f"class set {name!r} is already registered with other classes: {', '.join(CLASS_SETS[name])}")
    CLASS_SETS[name] = names
    return names


def class_set(spec) -> tuple[str, ...]:
    """The class names of a registered class set's name, or of a list of names (checked)."""
    if isinstance(spec, str):
        if spec not in CLASS_SETS:
            raise VrferError(f"unknown class set {spec!r}; known: {', '.join(CLASS_SETS)} (or a list of class names)")
        return CLASS_SETS[spec]
    return _checked(spec, "classes")
