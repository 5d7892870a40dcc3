"""vrfer models: every architecture and every bundled trained model in the registry."""

from __future__ import annotations

import json


def add_parser(sub):
    p = sub.add_parser("models", help="list architectures and bundled trained models",
                       description="Every architecture in the registry (untrained: fresh weights, for training) and "
                                   "every trained model bundled with vrfer, with input size, channels, input mode, "
                                   "parameters and training data.")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(fn=run)


def rows() -> list[dict]:
    from ..models.registry import build, count_params, list_models
    out = []
    for cfg in list_models():
        n = count_params(build(cfg))
        out.append({"name": cfg.name, "kind": "trained" if cfg.weights else "architecture", "arch": cfg.arch,
                    "input": "x".join(map(str, cfg.input_shape)), "input_mode": cfg.input_mode,
                    "channels": cfg.in_chans, "params": n,
                    "trained_on": cfg.trained_on or "-", "description": cfg.description})
    return out


def run(a) -> int:
    r = rows()
    if a.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"{'name':<20}{'kind':<14}{'input CxHxW':<13}{'mode':<16}{'params':>11}  trained on")
    for m in r:
        print(f"{m['name']:<20}{m['kind']:<14}{m['input']:<13}{m['input_mode']:<16}{m['params']:>11,}  {m['trained_on']}")
    return 0
