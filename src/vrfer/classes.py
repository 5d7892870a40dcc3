"""The one class order used everywhere in vrfer (FER+'s order).

AffectNet numbers its classes differently; its reader maps onto this order.
"""

CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
NUM_CLASSES = len(CLASSES)
CLASS_INDEX = {name: i for i, name in enumerate(CLASSES)}
