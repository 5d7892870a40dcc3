"""Faces in photos and video frames: where they are, which is the wearer's, and the square each is cut from.

    geometry.py    Face, CropGeometry and the FER+-style square crop (square_box, keypoint_square, face_square,
                   crop_square, align_crop), box overlap (iou) and the wearer-first order (wearer_first)
    colour.py      to_gray, to_bgr
    registry.py    the detector registry (register_detector, create_detector, list_detectors, get_detector) and
                   the FaceDetector protocol: the place to plug in a detector
    retinaface.py  RetinaFaceDetector, the default detector (also behind a headset)
    blazeface.py   BlazeFace, its fast second opinion, and a detector of its own
    weights.py     the detectors' ONNX weights shipped in vrfer/pretrained (pretrained_onnx)

Following a face through video frames: vrfer.faces.tracking. The synthetic headset drawn on photos: vrfer.occlusion.

Every name below can be imported from here (`from vrfer.faces import Face, get_detector`); each is loaded from
its file on first use, so that importing one part (the crop geometry, or the registry for the CLI's choices)
does not load the others.
"""

from ..lazy import lazy_names

# public name -> the file it lives in
_NAMES = {
    **dict.fromkeys(("FER_SIZE", "CROP_SIDE_PER_WIDTH", "CROP_BOTTOM", "KP_SIDE_PER_WIDTH", "KP_CENTRE",
                     "KP_MAX_ROLL", "CROP_RULES", "CROP_RULE", "DETECTOR_NAME", "Box", "CropGeometry", "Face",
                     "centre_inside", "wearer_key", "wearer_first", "iou", "square_box", "face_roll",
                     "keypoint_square", "face_square", "pixel_square", "crop_square", "check_box", "align_crop",
                     "crop_region"), "geometry"),
    **dict.fromkeys(("to_gray", "to_bgr"), "colour"),
    **dict.fromkeys(("DEFAULT_DETECTOR", "FaceDetector", "register_detector", "create_detector", "list_detectors",
                     "get_detector", "find_in_region"), "registry"),
    **dict.fromkeys(("RetinaFaceDetector", "retinaface_onnx"), "retinaface"),
    "BlazeFace": "blazeface",
    "pretrained_onnx": "weights",
}

__all__ = sorted(_NAMES)


__getattr__, __dir__ = lazy_names(__name__, globals(), _NAMES)
