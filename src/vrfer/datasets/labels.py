"""Microsoft's FER+ label rules (FERPlus src/ferplus.py, `_process_data`), on one image's 10 votes.

Votes come in FER+ order: 8 emotions (vrfer.classes.CLASSES), then "unknown" and "NF" (not a face).
Every mode first drops emotions that got a single vote (annotator noise).
"""

from __future__ import annotations

import numpy as np

LABEL_MODES = ("majority", "probability", "crossentropy", "multi_target")
VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
                "unknown", "NF")


def process_votes(votes, mode: str = "majority"):
    """Return the image's 8-class target, or None when Microsoft's rules discard the image.

    majority:      one-hot; the top emotion must hold more than half of the remaining votes.
    probability /
    crossentropy:  the distribution over the top emotions (ties kept) that cover >= 75% of the votes
                   or number 3; discarded if they cover <= 50% or need more than 3.
    multi_target:  multi-hot over every emotion with >= 30% of the votes.
    In every mode an image whose top label is unknown or NF is discarded.
    """
    if mode not in LABEL_MODES:
        raise ValueError(f"unknown label mode {mode!r}; expected one of {', '.join(LABEL_MODES)}")
    raw = [float(v) if float(v) > 1.0 else 0.0 for v in votes]  # drop single votes
    size = len(raw)
    total = sum(raw)
    emotion = [0.0] * size
    discard = False
    if mode == "majority":
        top = max(raw)
        if top > 0.5 * total:
            emotion[int(np.argmax(raw))] = top
        else:
            discard = True
    elif mode in ("probability", "crossentropy"):
        part, count, valid = 0.0, 0, True
        while part < 0.75 * total and count < 3 and valid:
            top = max(raw)
            for i in range(size):
                if raw[i] == top:
                    emotion[i] = top
                    raw[i] = 0.0
                    part += emotion[i]
                    count += 1
                    if i >= 8:  # unknown or NF tie with the emotions taken so far
                        valid = False
                        if sum(emotion) > top:  # other emotions came first: keep them, drop this one
                            emotion[i] = 0.0
                            count -= 1
                        break
        if sum(emotion) <= 0.5 * total or count > 3:
            discard = True
    else:  # multi_target
        for i in range(size):
            if raw[i] >= 0.3 * total:
                emotion[i] = raw[i]
        if sum(emotion) <= 0.5 * total:
            discard = True
    if discard or total == 0:
        return None
    if int(np.argmax(emotion)) >= 8:  # top label unknown / not a face
        return None
    target = np.asarray(emotion[:8], dtype=np.float32)
    if target.sum() <= 0:
        return None
    if mode == "multi_target":
        return (target > 0).astype(np.float32)
    return target / target.sum()
