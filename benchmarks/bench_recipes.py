"""Training images/s of each shipped recipe's model on this machine (random data, real model and input).

    python benchmarks/bench_recipes.py [--steps 5] [--max-batch 32] [--recipes cpu-full cpu-lower] [--bf16]

--bf16 times each recipe twice, float32 and under bfloat16 autocast (what recipe key `amp` turns on; "auto"
does where the CPU computes bf16 natively: AMX or AVX512_BF16, named in the first line).

VGG recipes at 224x224 are slow on CPU: their batch is capped with --max-batch so a run stays short.
"""

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from vrfer.inference.preprocess import prepare
from vrfer.training.model import build_model
from vrfer.training.recipe import load_recipe, recipe_names


def bench(name: str, steps: int, max_batch: int, bf16: bool = False) -> dict:
    r = load_recipe(name, ["init_from=\"\""])
    model = build_model(r).train()
    bs = min(r.optim.batch_size, max_batch)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    faces = np.random.default_rng(0).integers(0, 256, (bs, 48, 48), dtype=np.uint8)
    labels = torch.randint(0, 8, (bs,))
    g = torch.Generator().manual_seed(0)
    aug = r.augment
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(prepare(faces, model.cfg, aug, g)).float(), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:  # the first step warms up allocators
            times.append(time.perf_counter() - t)
    from torch.utils.flop_counter import FlopCounterMode
    model.eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.zeros(1, *model.cfg.input_shape))
    return {"recipe": name, "model": r.model, "input": "x".join(map(str, model.cfg.input_shape)),
            "gflop": fc.get_total_flops() / 1e9,
            "batch": bs, "img_per_s": bs / float(np.median(times)), "img_per_s_best": bs / float(np.min(times))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--recipes", nargs="+", default=recipe_names())
    ap.add_argument("--bf16", action="store_true", help="also time each under bfloat16 autocast")
    a = ap.parse_args()
    from vrfer.training.device import cpu_has_native_bf16
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"CPU {cpu} (native bf16: {cpu_has_native_bf16()}); torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'recipe':<16}{'model':<19}{'input':<11}{'batch':>6}{'precision':>10}{'img/s median':>14}{'best':>8}"
          f"{'fwd GFLOP/img':>15}{'train GFLOP/s':>15}   (training taken as 3 x forward; compare benchmarks/peak.py)")
    for name in a.recipes:
        for bf16 in ((False, True) if a.bf16 else (False,)):
            b = bench(name, a.steps, a.max_batch, bf16)
            print(f"{b['recipe']:<16}{b['model']:<19}{b['input']:<11}{b['batch']:>6}{'bf16' if bf16 else 'fp32':>10}"
                  f"{b['img_per_s']:>14.1f}{b['img_per_s_best']:>8.1f}{b['gflop']:>15.4f}"
                  f"{3 * b['gflop'] * b['img_per_s']:>15.1f}", flush=True)


if __name__ == "__main__":
    main()
