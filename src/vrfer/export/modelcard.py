"""The model card of an exported ONNX file: the card as data (FILE.json: classes, preprocessing, opset, I/O
names, checks), the same for people (FILE.md) and the C# that feeds the model from Unity.

Everything in the card is read back from the ONNX file's own metadata (vrfer.inference.onnx_backend): the card says
what the file carries. `vrfer export` (vrfer.export) writes it beside every file it makes.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from ..errors import VrferError
from ..inference.onnx_backend import MODEL_SHA256_KEY, quantization_info, read_metadata, REPRESENTATION
from ..faces.mouth_check import KEY
from ..personal.reference import HEAD_KEY


def model_card(cfg, onnx_path: Path, opset: int, max_diff: float | None = None,
               check: dict | None = None) -> dict:
    """The card of the ONNX file at onnx_path (made from a model with config cfg), as data. max_diff: the float32
    check against PyTorch; check: an int8 file's (vrfer.export.int8.check_int8)."""
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
    q = quantization_info(onnx_path)
    if q is not None:
        card["quantization"] = q
        card["metadata_keys"].append("vrfer_quantization")
        if check:
            card["check"] = check
    return card


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
        f"{det['left']}, top {det['top']}" + (
            f"; under this file's crop rule 'keypoints' the detected square is placed from the nose (nx, ny) and "
            f"the roll r instead: side {det['keypoints']['side']}, left {det['keypoints']['left']}, top "
            f"{det['keypoints']['top']}, with {det['keypoints']['roll']} ({det['keypoints']['fallback']})"
            if det.get("rule") == "keypoints" else "") + f"; {sq['rounding']}.",
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
        *reference_lines(cfg),
        *mouth_check_lines(cfg),
        "## From Unity (C#)",
        "",
        unity_csharp(cfg, card),
        "",
    ]
    return "\n".join(lines)


def write_card(out: Path, cfg, card: dict) -> tuple[Path, Path]:
    """The model card beside the .onnx file, as JSON (for programs) and Markdown (for people)."""
    json_path, md_path = out.with_suffix(".json"), out.with_suffix(".md")
    try:
        json_path.write_text(json.dumps(card, indent=2) + "\n")
        md_path.write_text(card_markdown(cfg, card))
    except OSError as e:
        raise VrferError(f"cannot write the model card beside {out} ({e.strerror or e})") from None
    return json_path, md_path


def unity_csharp(cfg, card: dict) -> str:
    """C# (Unity) for the steps of card["preprocessing"] (and card["calibration"], a profile, when the file
    has the representation output): the same numbers vrfer uses."""
    pre = card["preprocessing"]
    c, h, w = cfg.input_shape
    classes = ", ".join(f'"{k}"' for k in cfg.classes)
    get_probs, calib_code = _csharp_calibration(card)
    return f"""```csharp
// Unity Sentis 2.x (com.unity.sentis; Inference Engine 2.2+ has the same calls in Unity.InferenceEngine).
// The steps are vrfer's own (vrfer.inference.pipeline), as listed in the file's "vrfer_preprocessing" metadata.
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
{_csharp_input(cfg, pre)}
        worker.Schedule(input);
        {get_probs}
{_csharp_adjust(cfg, pre["postprocess"])}
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


def _csharp_input(cfg, pre: dict) -> str:
    """Steps 1-4 of Classify: the texture's pixels -> the model's input tensor `input`."""
    s = pre["crop"]["size"]
    c, h, w = cfg.input_shape
    top, bottom = pre["rows"]
    wr, wg, wb = pre["gray"]["weights_rgb"]
    shift = pre["gray"]["shift"]
    occl = ""
    if cfg.input_mode == "upper-occluded":
        occl = f"\n                if (y < {round(pre['image_size'] * cfg.occlusion)}) v = 0f;          // headset: top rows black"
    mean, std = pre["mean"][0], pre["std"][0]
    resize_note = "" if pre["image_size"] == s else (
        f"\n        // this model takes {pre['image_size']}x{pre['image_size']}: resize the {s}x{s} crop bilinearly "
        "(half-pixel centres) first")
    return f"""        int W = face.width, H = face.height;
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

        using var input = new Tensor<float>(new TensorShape(1, {c}, {h}, {w}), data);"""


def _csharp_adjust(cfg, post: dict) -> str:
    """Step 5 of Classify: the post-processing the file records (prior, class subset); empty when there is none."""
    if post["prior"] == "train" and len(post["classes"]) == len(cfg.classes):
        return ""
    keep = ", ".join("true" if k in post["classes"] else "false" for k in cfg.classes)
    if post["prior"] != "train" and post["train_prior"]:
        target = ([1.0 / len(cfg.classes)] * len(cfg.classes) if post["prior"] == "uniform" else post["prior"])
        shifts = ", ".join(f"{post['tau'] * (math.log(t) - math.log(q)):.6f}f"
                           for t, q in zip(target, post["train_prior"]))
    else:
        shifts = ", ".join("0f" for _ in cfg.classes)
    return f"""
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


def _csharp_calibration(card: dict) -> tuple[str, str]:
    """(the line that reads `probs`, the UseProfile/CalibratedProbs members): a profile applies where the file
    has the representation output (card["calibration"]), else plain `probs`."""
    calib = card.get("calibration")
    if not calib:
        return ("var probs = (worker.PeekOutput(\"probs\") as Tensor<float>).DownloadToArray();   // in the order of "
                "Classes", "")
    get_probs = ("var probs = rows == null ? (worker.PeekOutput(\"probs\") as Tensor<float>).DownloadToArray()"
                 "   // in the order of Classes\n                          : CalibratedProbs();")
    return get_probs, f"""

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


def mouth_check_lines(cfg) -> list[str]:
    """The model card's paragraph on the mouth check (vrfer.faces.mouth_check), when the model has one."""
    check = (cfg.extra or {}).get(KEY)
    if not check:
        return []
    return [
        "## Is it a face? (the mouth check)",
        "",
        "Behind a headset a face detector also boxes headset fronts, hands round controllers and patterned walls. "
        "vrfer reports a detected face only when, from the `representation` of its crop: "
        f"{check['formula']} (weight, mean, scale, bias and threshold {check['threshold']:g} in `vrfer_config` -> "
        "extra -> mouth_check); a photo of at most 640 px whose face's square covers half of it is kept unchecked. "
        "Apply it to each face your own detector finds before trusting the answer.",
        "",
    ]


def reference_lines(cfg) -> list[str]:
    """The model card's paragraph on the referenced head (vrfer.personal.reference), when the model has one."""
    head = (cfg.extra or {}).get(HEAD_KEY)
    if not head:
        return []
    fitted = ", ".join(f"{d.get('data', '?')} ({d.get('people', '?')} people)" for d in head.get("fitted_on", []))
    return [
        "## The wearer's neutral reference (a referenced head)",
        "",
        "Read the wearer's face as a change from their own relaxed face: `reference` = the mean `representation` of "
        "frames of the wearer relaxed (a neutral calibration; or automatically: the mean of the first 30 frames whose "
        f"plain answer says neutral with p >= 0.5, then moved 2% towards each later one). Then: {head['formula']}, with `weight` and `bias` from "
        f"`vrfer_config` -> extra -> reference_head (blend {head['blend']:g}; fitted on {fitted or '?'}), for the "
        "wearer's face only; then the post-processing of step 7. In C#: `Referenced(logits, rep, reference)` is "
        "`(1 - blend) * LogSoftmax(logits) + blend * LogSoftmax(W (rep - reference) + b)`, then softmax. Without a "
        "reference the answer is the plain one.",
        "",
        "```csharp",
        "// w, b, blend: vrfer_config -> extra -> reference_head (weight, bias, blend); logits, rep: the graph's outputs",
        "static float[] Referenced(double[][] w, double[] b, double blend, float[] logits, float[] rep, float[] reference)",
        "{",
        "    int C = logits.Length; var zr = new double[C]; var z = new double[C];",
        "    for (int c = 0; c < C; c++) { zr[c] = b[c]; for (int d = 0; d < rep.Length; d++) "
        "zr[c] += w[c][d] * ((double)rep[d] - reference[d]); }",
        "    double[] LogSoftmax(Func<int, double> x) { double m = double.MinValue, s = 0; var o = new double[C];",
        "        for (int c = 0; c < C; c++) m = Math.Max(m, x(c)); for (int c = 0; c < C; c++) s += Math.Exp(x(c) - m);",
        "        for (int c = 0; c < C; c++) o[c] = x(c) - m - Math.Log(s); return o; }",
        "    var lg = LogSoftmax(c => logits[c]); var lr = LogSoftmax(c => zr[c]);",
        "    for (int c = 0; c < C; c++) z[c] = (1 - blend) * lg[c] + blend * lr[c];",
        "    var p = LogSoftmax(c => z[c]); return Array.ConvertAll(p, v => (float)Math.Exp(v));",
        "}",
        "```",
        "",
    ]
