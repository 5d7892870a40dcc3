"""The one class order used everywhere in vrfer (FER+'s order).

AffectNet numbers its classes differently; its reader maps onto this order.
"""

CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
NUM_CLASSES = len(CLASSES)
CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}

# spellings other data sets and people use for vrfer's classes (labels.csv's label_name, `vrfer calibrate happy=...`)
ALIASES = {"happy": "happiness", "joy": "happiness", "sad": "sadness", "angry": "anger", "surprised": "surprise",
           "disgusted": "disgust", "fearful": "fear", "afraid": "fear", "scared": "fear", "calm": "neutral"}


def class_name(text: str) -> str:
    """A class as a person may spell it -> vrfer's name ("Happy" -> "happiness"); unknown words come back
    lower-cased, for the caller to refuse."""
    name = text.strip().lower()
    return ALIASES.get(name, name)
