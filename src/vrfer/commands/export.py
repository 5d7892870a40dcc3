"""`vrfer export`: a trained model as an ONNX file (Unity Sentis, onnxruntime) plus its model card.

    vrfer export --model vrfer-lower --format onnx --out vrfer-lower.onnx
    vrfer export --model vrfer-lower --format onnx --quantize int8 --calibrate ferplus=DIR \
        --out src/vrfer/pretrained/vrfer-lower-int8.onnx          # the int8 graph vrfer ships (vrfer.quantize)

writes vrfer-lower.onnx, vrfer-lower.json (the card as data: classes, preprocessing, opset, I/O names)
and vrfer-lower.md (the same for people, with C# to feed the model from Unity). The preprocessing is
vrfer.pipeline.preprocessing_spec: written from the code that `vrfer predict` runs.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from ..errors import VrferError
from ..options import int_in

FORMATS = ("onnx",)


def add_parser(sub) -> None:
    from .predict import add_postprocess_args
    p = sub.add_parser("export", help="export a model to ONNX (Unity Sentis / onnxruntime) with a model card",
                       description="Export a model to ONNX with its preprocessing in the file's metadata, and "
                                   "write a model card (FILE.json and FILE.md) beside it.")
    p.add_argument("--model", required=True,
                   help="registry name (e.g. vrfer-lower), .safetensors file or training run folder")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="export format (default onnx)")
    p.add_argument("--out", required=True, help="output file, e.g. vrfer-lower.onnx")
    p.add_argument("--opset", type=int, default=None,
                   help="ONNX opset, 9 up to the newest this PyTorch writes (default 15, the newest that "
                        "Unity Sentis reads)")
    add_postprocess_args(p)
    p.add_argument("--allow-untrained", action="store_true",
                   help="accept an architecture name (random weights); default: only trained models")
    p.add_argument("--no-check", action="store_true",
                   help="skip comparing onnxruntime's output with PyTorch's on sample faces")
    p.add_argument("--quantize", choices=["int8"], help="int8 static quantisation (onnxruntime, QDQ): faster, most "
                   "on CPUs with VNNI/AMX (docs/RESULTS.md, 'int8 classifier'); needs --calibrate")
    p.add_argument("--calibrate", metavar="ferplus=DIR",
                   help="faces that set the int8 ranges: a seeded sample of FER+ train faces under DIR")
    p.add_argument("--calibration-faces", type=int_in(10, note="fewer cannot set the int8 ranges"), default=None,
                   metavar="N",
                   help="how many FER+ train faces calibrate (default 2000)")
    p.set_defaults(fn=run)


def model_card(cfg, onnx_path: Path, opset: int, max_diff: float | None = None,
               check: dict | None = None) -> dict:
    from ..onnx_backend import MODEL_SHA256_KEY, read_metadata
    meta = read_metadata(onnx_path)
    pre = json.loads(meta["vrfer_preprocessing"])    # the card says what the file itself carries
    pre.pop("opset", None)
    rep = pre.pop("representation", None)
    calibration = pre.pop("calibration", None)
    meaning = {"logits": "class scores", "probs": "softmax probabilities (sum to 1)"}
    c, h, w = cfg.input_shape
    card = {
        "model": cfg.name,
        "arch": cfg.arch,
        "description": cfg.description,
        "trained_on": cfg.trained_on,
        "file": onnx_path.name,
        "sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        "format": "onnx",
        "opset": opset,
        "inputs": [{"name": pre["input_name"], "shape": ["batch", c, h, w], "dtype": "float32", "layout": "NCHW"}],
        "outputs": [{"name": n, "shape": ["batch", len(cfg.classes)], "dtype": "float32", "meaning": meaning[n]}
                    if n != (rep or {}).get("output") else
                    {"name": n, "shape": rep["shape"], "dtype": rep["dtype"], "meaning": rep["meaning"]}
                    for n in pre["output_names"]],
        "classes": list(cfg.classes),
        "preprocessing": {k: v for k, v in pre.items() if k not in ("classes", "input_name", "output_names")},
        "metadata_keys": ["vrfer_config", "vrfer_preprocessing", "classes", "input_mode", "vrfer_format",
                          *([MODEL_SHA256_KEY] if MODEL_SHA256_KEY in meta else [])],
    }
    if MODEL_SHA256_KEY in meta:
        card["model_sha256"] = meta[MODEL_SHA256_KEY]
    if calibration:
        card["calibration"] = calibration
    if cfg.extra:
        card["results"] = {k: v for k, v in cfg.extra.items() if isinstance(v, (int, float, str, dict, list))}
    if max_diff is not None:
        card["check"] = {"max_abs_diff_probs_vs_pytorch": max_diff}
    from ..quantize import quantization_info
    q = quantization_info(onnx_path)
    if q is not None:
        card["quantization"] = q
        card["metadata_keys"].append("vrfer_quantization")
        if check:
            card["check"] = check
    return card


def _csharp(cfg, card: dict) -> str:
    """C# (Unity) for the steps of card["preprocessing"] (and card["calibration"], a profile, when the file
    has the representation output): the same numbers vrfer uses."""
    from ..onnx_backend import MODEL_SHA256_KEY, REPRESENTATION
    pre = card["preprocessing"]
    post = pre["postprocess"]
    s = pre["crop"]["size"]
    c, h, w = cfg.input_shape
    top, bottom = pre["rows"]
    wr, wg, wb = pre["gray"]["weights_rgb"]
    shift = pre["gray"]["shift"]
    occl = ""
    if cfg.input_mode == "upper-occluded":
        occl = f"\n                if (y < {round(pre['image_size'] * cfg.occlusion)}) v = 0f;          // headset: top rows black"
    mean, std = pre["mean"][0], pre["std"][0]
    classes = ", ".join(f'"{k}"' for k in cfg.classes)
    resize_note = "" if pre["image_size"] == s else (
        f"\n        // this model takes {pre['image_size']}x{pre['image_size']}: resize the {s}x{s} crop bilinearly "
        "(half-pixel centres) first")
    adjust = ""
    if post["prior"] != "train" or len(post["classes"]) != len(cfg.classes):
        keep = ", ".join("true" if k in post["classes"] else "false" for k in cfg.classes)
        if post["prior"] != "train" and post["train_prior"]:
            target = ([1.0 / len(cfg.classes)] * len(cfg.classes) if post["prior"] == "uniform" else post["prior"])
            shifts = ", ".join(f"{post['tau'] * (math.log(t) - math.log(q)):.6f}f"
                               for t, q in zip(target, post["train_prior"]))
        else:
            shifts = ", ".join("0f" for _ in cfg.classes)
        adjust = f"""
        // 5. the post-processing recorded in this file (prior {post['prior']!r}, tau {post['tau']:g}):
        //    p_k ~ exp(log p_k + Shift[k]) over the kept classes, the others 0
        float[] Shift = {{ {shifts} }};
        bool[] Keep = {{ {keep} }};
        float sum = 0f;
        for (int k = 0; k < probs.Length; k++)
        {{
            probs[k] = Keep[k] ? probs[k] * Mathf.Exp(Shift[k]) : 0f;
            sum += probs[k];
        }}
        for (int k = 0; k < probs.Length; k++) probs[k] /= sum;"""
    calib = card.get("calibration")
    if calib:
        get_probs = ("var probs = rows == null ? (worker.PeekOutput(\"probs\") as Tensor<float>).DownloadToArray()"
                     "   // in the order of Classes\n                          : CalibratedProbs();")
        calib_code = f"""

    // Calibration to one person (optional): a profile JSON from `vrfer calibrate` for these weights.
    // {calib['formula']}.
    // Reading it needs com.unity.nuget.newtonsoft-json (Unity's JsonUtility cannot read `weight`, a list of lists).
    const string ModelSha256 = "{card.get('model_sha256', '')}";   // the file's {MODEL_SHA256_KEY}
    public class VrferProfile {{ public string format, model_sha256; public string[] classes; public float[][] weight; public float[] bias; }}
    int[] rows; float[][] weight; float[] bias;

    public void UseProfile(string json)                  // null: no calibration
    {{
        if (json == null) {{ rows = null; return; }}
        var p = Newtonsoft.Json.JsonConvert.DeserializeObject<VrferProfile>(json);
        if (p.format != "vrfer-profile" || p.model_sha256 != ModelSha256)
            throw new ArgumentException("profile made for other weights (model_sha256): calibrate again with this model");
        var r = Array.ConvertAll(p.classes, c => Array.IndexOf(Classes, c));
        if (Array.IndexOf(r, -1) >= 0) throw new ArgumentException("profile names a class this model does not have");
        (rows, weight, bias) = (r, p.weight, p.bias);
    }}

    float[] CalibratedProbs()                            // in doubles, as vrfer
    {{
        var logits = (worker.PeekOutput("logits") as Tensor<float>).DownloadToArray();
        var rep = (worker.PeekOutput("{REPRESENTATION}") as Tensor<float>).DownloadToArray();   // D numbers
        var z = Array.ConvertAll(logits, v => (double)v);
        for (int j = 0; j < rows.Length; j++)
        {{
            double acc = bias[j];
            for (int d = 0; d < rep.Length; d++) acc += (double)rep[d] * weight[j][d];
            z[rows[j]] = acc;                            // enrolled class: the profile's row; the others: the model's
        }}
        double max = z[0], total = 0;
        foreach (var v in z) max = Math.Max(max, v);
        for (int k = 0; k < z.Length; k++) total += z[k] = Math.Exp(z[k] - max);
        return Array.ConvertAll(z, v => (float)(v / total));
    }}"""
    else:
        get_probs = "var probs = (worker.PeekOutput(\"probs\") as Tensor<float>).DownloadToArray();   // in the order of Classes"
        calib_code = ""
    return f"""```csharp
// Unity Sentis 2.x (com.unity.sentis; Inference Engine 2.2+ has the same calls in Unity.InferenceEngine).
// The steps are vrfer's own (vrfer.pipeline), as listed in the file's "vrfer_preprocessing" metadata.
using System;
using Unity.Sentis;
using UnityEngine;

public class FaceExpression : MonoBehaviour
{{
    public ModelAsset modelAsset;                       // drag {card['file']} here
    static readonly string[] Classes = {{ {classes} }};
    Worker worker;

    void Start() => worker = new Worker(ModelLoader.Load(modelAsset), BackendType.CPU);

    // face: an image of the face (a Texture2D with Read/Write enabled), the face filling it, as for
    // `vrfer predict --face none`; a face region (x, y, w, h) of a larger image works the same way.
    public (string label, float p) Classify(Texture2D face)
    {{
        int W = face.width, H = face.height;
        Color32[] px = face.GetPixels32();               // row 0 = BOTTOM of the image in Unity

        // 1. gray, exactly as OpenCV (integers): (R*{wr} + G*{wg} + B*{wb} + {1 << (shift - 1)}) >> {shift}
        var gray = new byte[W * H];
        for (int y = 0; y < H; y++)                      // y counts from the TOP
            for (int x = 0; x < W; x++)
            {{
                Color32 q = px[(H - 1 - y) * W + x];
                gray[y * W + x] = (byte)((q.r * {wr} + q.g * {wg} + q.b * {wb} + {1 << (shift - 1)}) >> {shift});
            }}

        // 2. the square around the face: side max(W, H), centred; outside the image the nearest edge
        //    pixel is repeated (never a black border). Math.Round rounds halves to even, as vrfer does.
        int side = Math.Max(W, H);
        int left = (int)Math.Round(W / 2.0 - side / 2.0), top = (int)Math.Round(H / 2.0 - side / 2.0);
        Func<int, int, float> at = (sx, sy) =>
            gray[Math.Clamp(top + sy, 0, H - 1) * W + Math.Clamp(left + sx, 0, W - 1)];

        // 3. area-average the square down to {s}x{s} (OpenCV INTER_AREA): each output pixel is the mean of
        //    the input pixels it covers, weighted by the covered fraction of each; rounded to a whole level.
        //    This loop is for squares of {s} pixels or more (vrfer enlarges smaller ones bilinearly, with
        //    half-pixel centres). Not Graphics.Blit: its bilinear filter skips pixels when shrinking.
        var crop = new float[{s} * {s}];
        double k = (double)side / {s};
        for (int oy = 0; oy < {s}; oy++)
            for (int ox = 0; ox < {s}; ox++)
            {{
                double acc = 0;
                for (int sy = (int)Math.Floor(oy * k); sy < Math.Min(side, (int)Math.Ceiling((oy + 1) * k)); sy++)
                {{
                    double wy = Math.Min((oy + 1) * k, sy + 1) - Math.Max(oy * k, sy);
                    for (int sx = (int)Math.Floor(ox * k); sx < Math.Min(side, (int)Math.Ceiling((ox + 1) * k)); sx++)
                        acc += wy * (Math.Min((ox + 1) * k, sx + 1) - Math.Max(ox * k, sx)) * at(sx, sy);
                }}
                crop[oy * {s} + ox] = (float)Math.Round(acc / (k * k));
            }}{resize_note}

        // 4. the rows the model sees ([{top}:{bottom}] from the top), normalised: (v - {mean:g}) / {std:g}
        var data = new float[{c} * {h} * {w}];
        for (int y = {top}; y < {bottom}; y++)
            for (int x = 0; x < {w}; x++)
            {{
                float v = crop[y * {s} + x];{occl}
                for (int ch = 0; ch < {c}; ch++)
                    data[(ch * {h} + (y - {top})) * {w} + x] = (v - {mean:g}f) / {std:g}f;
            }}

        using var input = new Tensor<float>(new TensorShape(1, {c}, {h}, {w}), data);
        worker.Schedule(input);
        {get_probs}
{adjust}
        int best = 0;
        for (int j = 1; j < probs.Length; j++) if (probs[j] > probs[best]) best = j;
        return (Classes[best], probs[best]);
    }}

    void OnDestroy() => worker?.Dispose();{calib_code}
}}
```

Step 3 in doubles matches OpenCV's INTER_AREA except, rarely, a pixel one gray level apart (OpenCV
accumulates in single precision); examples/onnx_client.py (Python: Pillow, OpenCV, onnxruntime) follows
the same steps and gives vrfer's probabilities to 1e-5.
Sentis 1.x names these `WorkerFactory.CreateWorker(BackendType.CPU, model)`, `TensorFloat`,
`worker.Execute(input)` and `PeekOutput("probs") as TensorFloat` + `MakeReadable()`/`ToReadOnlyArray()`.
Outside Unity, the NuGet package Microsoft.ML.OnnxRuntime runs the same file:
`new InferenceSession(path).Run(new[] {{ NamedOnnxValue.CreateFromTensor("input", new DenseTensor<float>(data, new[] {{1, {c}, {h}, {w}}})) }})`."""


def card_markdown(cfg, card: dict) -> str:
    pre = card["preprocessing"]
    sq, crop, post = pre["square"], pre["crop"], pre["postprocess"]
    det = sq["detect"]
    lines = [
        f"# {cfg.name} (ONNX)",
        "",
        f"{cfg.description or cfg.arch}" + (f" Trained on {cfg.trained_on}." if cfg.trained_on else ""),
        "",
        f"- file: `{card['file']}` (sha256 `{card['sha256'][:16]}...`), opset {card['opset']} "
        f"(Unity Sentis reads opsets 7-15; onnxruntime any)",
        f"- input `input`: float32 NCHW (batch, {', '.join(map(str, cfg.input_shape))}) (batch axis dynamic)",
        "- outputs: `logits` and `probs` (softmax), float32 (batch, "
        f"{len(cfg.classes)}), classes in this order: {', '.join(cfg.classes)}"
        + "".join(f"; `{o['name']}` float32 (batch, {o['shape'][1]}): {o['meaning']}"
                  for o in card["outputs"][2:]),
        f"- input mode: {cfg.input_mode}" + (f" (occlusion {cfg.occlusion:g} of the rows)"
                                             if cfg.input_mode != "full" else ""),
        *([f"- checked: onnxruntime vs PyTorch probabilities agree to "
           f"{card['check']['max_abs_diff_probs_vs_pytorch']:.1e} (max abs diff)"]
          if "max_abs_diff_probs_vs_pytorch" in card.get("check", {}) else []),
        *([f"- int8 (onnxruntime static quantisation, {card['quantization']['format']}; calibrated on "
           f"{card['quantization']['calibration']})"] if "quantization" in card else []),
        *([f"- checked: same top class as the float32 PyTorch model on {card['check']['agreement']:.2%} of "
           f"{card['check']['faces']} (max abs diff of probabilities {card['check']['max_abs_diff']:.3f})"]
          if "agreement" in card.get("check", {}) else []),
        "",
        "## From an image to the answer (what `vrfer predict` does)",
        "",
        f"1. Load: {pre['load']['decoder']}, EXIF orientation applied; 16-bit: {pre['load']['uint16']}; "
        f"transparency {pre['load']['alpha']}.",
        f"2. Gray: {pre['gray']['formula']}.",
        f"3. Face box: `--face none`: {pre['face']['none']}; `--face x,y,w,h`: {pre['face']['box']}; "
        f"`--face detect`: {pre['face']['detect']}.",
        f"4. Square: for none/a box, side {sq['none_or_box']['side']}, left {sq['none_or_box']['left']}, "
        f"top {sq['none_or_box']['top']}; for a detected box (FER+ framing), side {det['side']}, left "
        f"{det['left']}, top {det['top']}; {sq['rounding']}.",
        f"5. Crop: {crop['pad_note']}; resize to {crop['size']}x{crop['size']}: {crop['resize_note']}.",
        f"6. Model input: {pre['formula']}.",
        f"7. Output: `probs`; then {post['formula']}. the post-processing recorded in this file: prior {post['prior']!r}, "
        f"tau {post['tau']:g}, classes {', '.join(post['classes'])}"
        + ("" if post["prior"] != "train" or len(post["classes"]) != len(cfg.classes) else " (nothing to do)") + ".",
        "",
        f"- rows: {pre['row_order']}",
        "- the same steps are in the ONNX file's metadata: `vrfer_preprocessing` (JSON), with `vrfer_config` "
        "and `classes`; `examples/onnx_client.py` in the vrfer repository follows them with numpy, Pillow, "
        "OpenCV and onnxruntime only",
        "",
        *([
            "## Calibration to a person (a vrfer profile)",
            "",
            f"A profile (`vrfer calibrate ... --out me.json`) refits the last layer's rows of the classes the person "
            f"showed. Check: {card['calibration']['check']} (`{card.get('model_sha256', '')[:16]}...`). "
            f"Then, from the outputs `logits` and `representation`: {card['calibration']['formula']}. "
            "The post-processing is step 7 above. In C# below: `UseProfile(json)`; `examples/onnx_client.py "
            "FILE.onnx face.jpg --profile me.json` does the same in Python and answers as "
            "`vrfer predict --profile me.json`.",
            "",
        ] if "calibration" in card else []),
        "## From Unity (C#)",
        "",
        _csharp(cfg, card),
        "",
    ]
    return "\n".join(lines)


def _sample_faces(n: int = 8, size: int = 48):
    """Smooth face-like crops (deterministic) for the export check."""
    import numpy as np
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        f = 90 + 60 * np.exp(-(((xx - 0.5) / 0.32) ** 2 + ((yy - 0.5) / 0.42) ** 2))
        f -= 70 * np.exp(-(((xx - 0.5) / rng.uniform(0.1, 0.2)) ** 2 + ((yy - rng.uniform(0.7, 0.8)) / 0.04) ** 2))
        f += rng.normal(0, 8, f.shape)
        out.append(np.clip(f, 0, 255).astype(np.uint8))
    return np.stack(out)


def run(a) -> int:
    from ..inference import TorchClassifier
    from ..models import create_model
    from ..onnx_backend import DEFAULT_OPSET, SENTIS_MAX_OPSET, OnnxClassifier, check_opset, export_onnx
    from ..models.registry import require_trained
    from ..outputs import output_file
    from ..pipeline import PostProcess

    if a.format != "onnx":  # pragma: no cover - argparse restricts it
        raise VrferError(f"unknown format {a.format!r}")
    opset = check_opset(a.opset if a.opset is not None else DEFAULT_OPSET)
    out = Path(a.out)
    if out.suffix.lower() != ".onnx":
        raise VrferError(f"{out}: the output file should end in .onnx")
    if not a.allow_untrained:
        require_trained(a.model)
    model = create_model(a.model)
    post = PostProcess(model.cfg, a.prior, a.prior_tau, a.classes)
    for path in (out, out.with_suffix(".json"), out.with_suffix(".md")):
        output_file(path)
    if a.quantize:
        return _run_int8(a, model, out, opset, post)
    if a.calibrate or a.calibration_faces is not None:
        raise VrferError(f"{'--calibrate' if a.calibrate else '--calibration-faces'} goes with --quantize int8")
    export_onnx(model, out, opset, post)

    max_diff = None
    if not a.no_check:
        faces = _sample_faces(8, model.cfg.image_size)
        p_onnx = OnnxClassifier(str(out)).predict_proba(faces)
        p_torch = TorchClassifier(model).predict_proba(faces)
        max_diff = float(abs(p_onnx - p_torch).max())
        if max_diff > 1e-3:
            raise VrferError(f"{out}: onnxruntime and PyTorch disagree (max abs diff {max_diff:.2g})")

    card = model_card(model.cfg, out, opset, max_diff)
    json_path, md_path = _write_card(out, model.cfg, card)
    c, h, w = model.cfg.input_shape
    check = f", max |onnx - torch| {max_diff:.1e}" if max_diff is not None else ""
    print(f"wrote {out} (opset {opset}, input (batch, {c}, {h}, {w}), {model.cfg.input_mode}{check}) "
          f"and its card {json_path.name}, {md_path.name}")
    if opset > SENTIS_MAX_OPSET:
        print(f"note: Unity Sentis reads opsets up to {SENTIS_MAX_OPSET}; use --opset {SENTIS_MAX_OPSET} for Unity")
    return 0


def _write_card(out: Path, cfg, card: dict) -> tuple[Path, Path]:
    """The model card beside the .onnx file, as JSON (for programs) and Markdown (for people)."""
    json_path, md_path = out.with_suffix(".json"), out.with_suffix(".md")
    try:
        json_path.write_text(json.dumps(card, indent=2) + "\n")
        md_path.write_text(card_markdown(cfg, card))
    except OSError as e:
        raise VrferError(f"cannot write the model card beside {out} ({e.strerror or e})") from None
    return json_path, md_path


def _run_int8(a, model, out: Path, opset: int, post=None) -> int:
    """Float export to a temporary file, int8 quantisation calibrated on FER+ train faces, and a check
    against the float32 PyTorch model on FER+ validation faces (same top class on at least 95%)."""
    import tempfile

    import numpy as np

    from ..datasets.ferplus import load_ferplus
    from ..inference import TorchClassifier
    from ..onnx_backend import OnnxClassifier, weights_file, export_onnx
    from ..quantize import (CALIBRATION_FACES, CALIBRATION_SEED, calibration_faces, parse_calibrate, quantize_int8,
                            weights_fingerprint)

    if not a.calibrate:
        raise VrferError("--quantize int8 needs --calibrate ferplus=DIR (FER+ train faces set the int8 ranges)")
    root = parse_calibrate(a.calibrate)
    n = CALIBRATION_FACES if a.calibration_faces is None else a.calibration_faces
    weights = weights_file(a.model)
    fingerprint = weights_fingerprint(weights) if weights is not None and weights.is_file() else None
    faces = calibration_faces(root, n)
    with tempfile.TemporaryDirectory() as d:
        f32 = export_onnx(model, Path(d) / "float32.onnx", opset, post)
        quantize_int8(f32, out, faces, weights_fingerprint=fingerprint,
                      calibration=f"{len(faces)} FER+ train faces (seed {CALIBRATION_SEED})")
    check = None
    if not a.no_check:
        valid = load_ferplus(root, "valid", "majority").images[:1000]
        p8 = OnnxClassifier(str(out)).predict_proba(valid)
        p32 = TorchClassifier(model).predict_proba(valid)
        check = {"faces": f"{len(valid)} FER+ valid faces", "agreement": float((p8.argmax(1) == p32.argmax(1)).mean()),
                 "max_abs_diff": float(np.abs(p8 - p32).max())}
        if check["agreement"] < 0.95:
            raise VrferError(f"{out}: the int8 model disagrees with the float32 one on "
                             f"{1 - check['agreement']:.1%} of FER+ valid faces (broken quantisation?)")
    card = model_card(model.cfg, out, opset, check=check)
    json_path, md_path = _write_card(out, model.cfg, card)
    agree = f", same top class as float32 on {check['agreement']:.2%} of {check['faces']}" if check else ""
    print(f"wrote {out} (int8, opset {opset}, {out.stat().st_size / 1e6:.1f} MB{agree}) "
          f"and its card {json_path.name}, {md_path.name}")
    return 0
