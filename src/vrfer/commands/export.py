"""`vrfer export`: a trained model as an ONNX file (Unity Sentis, onnxruntime) plus its model card.

    vrfer export --model vrfer-lower --format onnx --out vrfer-lower.onnx

writes vrfer-lower.onnx, vrfer-lower.json (the card as data: classes, preprocessing, opset, I/O names)
and vrfer-lower.md (the same for people, with C# to feed the model from Unity).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import VrferError

FORMATS = ("onnx",)


def add_parser(sub) -> None:
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
    p.add_argument("--allow-untrained", action="store_true",
                   help="accept an architecture name (random weights); default: only trained models")
    p.add_argument("--no-check", action="store_true",
                   help="skip comparing onnxruntime's output with PyTorch's on sample faces")
    p.set_defaults(fn=run)


def model_card(cfg, onnx_path: Path, opset: int, max_diff: float | None = None) -> dict:
    from ..onnx_backend import OUTPUT_NAMES, preprocessing_spec
    pre = preprocessing_spec(cfg)
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
        "outputs": [{"name": n, "shape": ["batch", len(cfg.classes)], "dtype": "float32",
                     "meaning": "class scores" if n == "logits" else "softmax probabilities (sum to 1)"}
                    for n in OUTPUT_NAMES],
        "classes": list(cfg.classes),
        "preprocessing": {k: v for k, v in pre.items() if k not in ("classes", "input_name", "output_names")},
        "metadata_keys": ["vrfer_config", "vrfer_preprocessing", "classes", "input_mode", "vrfer_format"],
    }
    if cfg.extra:
        card["results"] = {k: v for k, v in cfg.extra.items() if isinstance(v, (int, float, str, dict, list))}
    if max_diff is not None:
        card["check"] = {"max_abs_diff_probs_vs_pytorch": max_diff}
    return card


def _csharp(cfg, card: dict) -> str:
    pre = card["preprocessing"]
    s = cfg.image_size
    c, h, w = cfg.input_shape
    top = pre["rows"][0] if cfg.input_mode == "visible-half" else 0
    occl = ""
    if cfg.input_mode == "upper-occluded":
        occl = f"\n            if (y < {round(s * cfg.occlusion)}) v = 0f;                      // headset: top rows black"
    mean, std = pre["mean"][0], pre["std"][0]
    classes = ", ".join(f'"{k}"' for k in cfg.classes)
    return f"""```csharp
// Unity Sentis 2.x (com.unity.sentis; Inference Engine 2.2+ has the same calls in Unity.InferenceEngine).
using Unity.Sentis;
using UnityEngine;

public class FaceExpression : MonoBehaviour
{{
    public ModelAsset modelAsset;                       // drag {card['file']} here
    static readonly string[] Classes = {{ {classes} }};
    Worker worker;

    void Start() => worker = new Worker(ModelLoader.Load(modelAsset), BackendType.CPU);

    // face: a square crop of the face (a Texture2D with Read/Write enabled).
    public (string label, float p) Classify(Texture2D face)
    {{
        // 1. resize to {s}x{s} (bilinear) and read it back
        var rt = RenderTexture.GetTemporary({s}, {s}, 0);
        Graphics.Blit(face, rt);
        var prev = RenderTexture.active; RenderTexture.active = rt;
        var small = new Texture2D({s}, {s}, TextureFormat.RGBA32, false);
        small.ReadPixels(new Rect(0, 0, {s}, {s}), 0, 0); small.Apply();
        RenderTexture.active = prev; RenderTexture.ReleaseTemporary(rt);
        Color32[] px = small.GetPixels32();             // row 0 = BOTTOM of the image in Unity

        // 2. grayscale, keep rows [{top}:{s}] counted from the TOP, normalise: (v - {mean:g}) / {std:g}
        var data = new float[{c} * {h} * {w}];
        for (int y = {top}; y < {s}; y++)                 // y counts from the top of the face
            for (int x = 0; x < {s}; x++)
            {{
                Color32 q = px[({s} - 1 - y) * {s} + x];   // flip: Unity rows are bottom-up
                float v = 0.299f * q.r + 0.587f * q.g + 0.114f * q.b;{occl}
                for (int ch = 0; ch < {c}; ch++)
                    data[(ch * {h} + (y - {top})) * {w} + x] = (v - {mean:g}f) / {std:g}f;
            }}
        Destroy(small);

        // 3. run; output "probs" is (1, {len(cfg.classes)}) softmax probabilities in the order of Classes
        using var input = new Tensor<float>(new TensorShape(1, {c}, {h}, {w}), data);
        worker.Schedule(input);
        var probs = (worker.PeekOutput("probs") as Tensor<float>).DownloadToArray();
        int best = 0;
        for (int k = 1; k < probs.Length; k++) if (probs[k] > probs[best]) best = k;
        return (Classes[best], probs[best]);
    }}

    void OnDestroy() => worker?.Dispose();
}}
```

Shrinking a large crop with one bilinear Blit skips pixels (vrfer's resize is antialiased): halve it
with repeated Blits, or use a crop near {s}x{s}, to get the same input as in training.
Sentis 1.x names these `WorkerFactory.CreateWorker(BackendType.CPU, model)`, `TensorFloat`,
`worker.Execute(input)` and `PeekOutput("probs") as TensorFloat` + `MakeReadable()`/`ToReadOnlyArray()`.
Outside Unity, the NuGet package Microsoft.ML.OnnxRuntime runs the same file:
`new InferenceSession(path).Run(new[] {{ NamedOnnxValue.CreateFromTensor("input", new DenseTensor<float>(data, new[] {{1, {c}, {h}, {w}}})) }})`."""


def card_markdown(cfg, card: dict) -> str:
    pre = card["preprocessing"]
    lines = [
        f"# {cfg.name} (ONNX)",
        "",
        f"{cfg.description or cfg.arch}" + (f" Trained on {cfg.trained_on}." if cfg.trained_on else ""),
        "",
        f"- file: `{card['file']}` (sha256 `{card['sha256'][:16]}...`), opset {card['opset']} "
        f"(Unity Sentis reads opsets 7-15; onnxruntime any)",
        f"- input `input`: float32 NCHW (batch, {', '.join(map(str, cfg.input_shape))}) (batch axis dynamic)",
        "- outputs: `logits` and `probs` (softmax), float32 (batch, "
        f"{len(cfg.classes)}), classes in this order: {', '.join(cfg.classes)}",
        f"- input mode: {cfg.input_mode}" + (f" (occlusion {cfg.occlusion:g} of the rows)"
                                             if cfg.input_mode != "full" else ""),
        *([f"- checked: onnxruntime vs PyTorch probabilities agree to "
           f"{card['check']['max_abs_diff_probs_vs_pytorch']:.1e} (max abs diff)"] if "check" in card else []),
        "",
        "## Preprocessing",
        "",
        pre["formula"] + ".",
        "",
        f"- crop: {pre['crop']}",
        f"- color: {pre['channel_order']}",
        f"- resize: {pre['resize']}",
        f"- rows: {pre['row_order']}",
        "- the same is in the ONNX file's metadata: `vrfer_preprocessing` (JSON), `vrfer_config`, `classes`",
        "",
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

    if a.format != "onnx":  # pragma: no cover - argparse restricts it
        raise VrferError(f"unknown format {a.format!r}")
    from ..models.registry import require_trained
    from ..outputs import output_file
    opset = check_opset(a.opset if a.opset is not None else DEFAULT_OPSET)
    out = Path(a.out)
    if out.suffix.lower() != ".onnx":
        raise VrferError(f"{out}: the output file should end in .onnx")
    if not a.allow_untrained:
        require_trained(a.model)
    model = create_model(a.model)
    for path in (out, out.with_suffix(".json"), out.with_suffix(".md")):
        output_file(path)
    export_onnx(model, out, opset)

    max_diff = None
    if not a.no_check:
        faces = _sample_faces(8, model.cfg.image_size)
        p_onnx = OnnxClassifier(str(out)).predict_proba(faces)
        p_torch = TorchClassifier(model).predict_proba(faces)
        max_diff = float(abs(p_onnx - p_torch).max())
        if max_diff > 1e-3:
            raise VrferError(f"{out}: onnxruntime and PyTorch disagree (max abs diff {max_diff:.2g})")

    card = model_card(model.cfg, out, opset, max_diff)
    json_path, md_path = out.with_suffix(".json"), out.with_suffix(".md")
    try:
        json_path.write_text(json.dumps(card, indent=2) + "\n")
        md_path.write_text(card_markdown(model.cfg, card))
    except OSError as e:
        raise VrferError(f"cannot write the model card beside {out} ({e.strerror or e})") from None
    c, h, w = model.cfg.input_shape
    check = f", max |onnx - torch| {max_diff:.1e}" if max_diff is not None else ""
    print(f"wrote {out} (opset {opset}, input (batch, {c}, {h}, {w}), {model.cfg.input_mode}{check}) "
          f"and its card {json_path.name}, {md_path.name}")
    if opset > SENTIS_MAX_OPSET:
        print(f"note: Unity Sentis reads opsets up to {SENTIS_MAX_OPSET}; use --opset {SENTIS_MAX_OPSET} for Unity")
    return 0
