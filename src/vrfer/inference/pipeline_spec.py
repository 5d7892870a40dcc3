"""The pipeline's steps 1-5 (vrfer.inference.pipeline, vrfer.faces, vrfer.inference.preprocess, vrfer.inference.postprocess) written down as
data from the constants and the model config the code uses: what an exported ONNX file carries as its
"vrfer_preprocessing" metadata and examples/onnx_client.py follows without vrfer."""

from __future__ import annotations

from ..faces.geometry import DETECTOR_NAME, FER_SIZE
from ..occlusion import visible_rows
from .postprocess import PostProcess

# OpenCV's BGR -> gray for uint8 (cv2.cvtColor COLOR_BGR2GRAY, what vrfer.faces.to_gray calls), as integers:
# gray = (R * 9798 + G * 19235 + B * 3735 + 2**14) >> 15 (tests/test_pipeline.py checks it is OpenCV's)
GRAY_WEIGHTS_RGB = (9798, 19235, 3735)
GRAY_SHIFT = 15


def preprocessing_spec(cfg, post: PostProcess | None = None) -> dict:
    """Steps 1-5 as data, from the constants this module and vrfer.faces / vrfer.inference.preprocess use: what the
    exported ONNX file carries (metadata "vrfer_preprocessing") and examples/onnx_client.py follows."""
    post = post or PostProcess(cfg)
    s = cfg.image_size
    top = visible_rows(s, cfg.occlusion)
    c, h, w = cfg.input_shape
    mean = [float(v) for v in cfg.mean]
    std = [float(v) for v in cfg.std]
    m = f"{mean[0]:g}" if len(set(mean)) == 1 else str(mean)
    d = f"{std[0]:g}" if len(set(std)) == 1 else str(std)
    if cfg.input_mode == "visible-half":
        rows = [top, s]
        mode_step = f", then rows [{top}:{s}] (the visible lower part; the top {top} rows are dropped)"
    elif cfg.input_mode == "upper-occluded":
        rows = [0, s]
        mode_step = f", then rows [0:{top}] set to 0 (black, as under a headset)"
    else:
        rows = [0, s]
        mode_step = ""
    chans = "" if c == 1 else f", replicated to {c} identical channels"
    resize_model = "" if s == FER_SIZE else f" resized to {s}x{s} (bilinear)"
    formula = (f"input = (the {FER_SIZE}x{FER_SIZE} gray face crop{resize_model}{mode_step}{chans}, minus {m}, "
               f"divided by {d}), float32 NCHW ({c}x{h}x{w} per face)")
    r, g, b = GRAY_WEIGHTS_RGB
    return {
        "spec_version": 2,
        "classes": list(cfg.classes),
        "load": {"decoder": "Pillow", "exif_orientation": True, "uint16": "high byte (v >> 8)",
                 "alpha": "composited over white", "other_modes": "converted to RGB (Pillow convert)"},
        "gray": {"weights_rgb": [r, g, b], "shift": GRAY_SHIFT,
                 "formula": f"gray = (R*{r} + G*{g} + B*{b} + {1 << (GRAY_SHIFT - 1)}) >> {GRAY_SHIFT} "
                            "(OpenCV COLOR_BGR2GRAY on uint8); gray images as they are"},
        "face": {
            "none": "the box is the whole image: [0, 0, width, height]",
            "box": "the box x,y,w,h as given, in whole pixels",
            "detect": f"boxes and 5 landmarks (left eye, right eye, nose, left and right mouth corner, image "
                      f"left/right) from vrfer's {DETECTOR_NAME} detector (not in this file)",
        },
        "square": _square_spec(cfg.crop_geometry),
        "crop": {"size": FER_SIZE, "pad": "replicate",
                 "pad_note": "where the square leaves the image, the nearest edge pixel is repeated",
                 "shrink": "area", "enlarge": "bilinear",
                 "resize_note": "OpenCV cv2.resize with INTER_AREA when the square is larger than "
                                f"{FER_SIZE}, INTER_LINEAR when smaller, nothing when equal"},
        "image_size": s,
        "resize": ("none (the crop is already the model's size)" if s == FER_SIZE else
                   f"{FER_SIZE} -> {s}: bilinear, half-pixel centres (align_corners=False), antialiased when "
                   "shrinking (torch.nn.functional.interpolate)"),
        "input_mode": cfg.input_mode,
        "occlusion": float(cfg.occlusion),
        "rows": rows,
        "mean": mean,
        "std": std,
        "channel_order": "grayscale (0-255)" + ("" if c == 1 else f" replicated to {c} channels"),
        "row_order": "row 0 is the top of the face (Unity textures are stored bottom-up: flip them)",
        "input_shape": ["batch", c, h, w],
        "dtype": "float32",
        "layout": "NCHW",
        "formula": formula,
        "postprocess": post.spec(),
    }


def _square_spec(geo) -> dict:
    """How the square a face is cut from is placed (vrfer.faces.face_square with the model's CropGeometry)."""
    return {
        "none_or_box": {"side": "max(w, h)", "left": "x + w/2 - side/2", "top": "y + h/2 - side/2"},
        "detect": {"rule": geo.rule,
                   "side_per_width": geo.side_per_width, "bottom": geo.bottom,
                   "side": f"{geo.side_per_width} * w", "left": "x + w/2 - side/2",
                   "top": f"y + h + ({geo.bottom}) * h - side",
                   "rule_note": "rule 'box': the square above from the box; rule 'keypoints': the square "
                                "in 'keypoints' from the nose (nx, ny), where the landmarks allow it, else "
                                "the square above",
                   "keypoints": {
                       "side_per_width": geo.kp_side_per_width, "centre": list(geo.kp_centre),
                       "side": f"{geo.kp_side_per_width} * w",
                       "roll": "r = atan2 of the mouth corners' line (right minus left); where the corners "
                               "coincide at (mx, my), r = atan2(-(mx - nx), my - ny), of the nose-to-mouth line",
                       "left": f"nx + cos(r) * {geo.kp_centre[0]} * side - sin(r) * ({geo.kp_centre[1]}) * side "
                               "- side/2",
                       "top": f"ny + sin(r) * {geo.kp_centre[0]} * side + cos(r) * ({geo.kp_centre[1]}) * side "
                              "- side/2",
                       "max_roll_degrees": geo.kp_max_roll,
                       "fallback": f"the box's square when a landmark is missing or not finite, the nose "
                                   f"lies outside the box, or |r| > {geo.kp_max_roll:g} degrees"}},
        "rounding": "left, top and side to the nearest integer, halves to even; side at least 1",
    }
