"""Training and inference speed, FLOPs and size of vrfer's architectures on this machine's CPU.

    .venv/bin/python benchmarks/bench_models.py                 # default: ~30 s (1 thread, beside a training job)
    .venv/bin/python benchmarks/bench_models.py --steps 1 --warmup 0 --batch 8 --no-native   # smoke test

Every model is measured on the same inputs: the 48x48 FER+ face ("full") and its visible lower half
(24x48, "visible-half"); models made for another size (vgg-f, vgg-face: 224x224) are also measured
at that size, for one step with a smaller batch (slow on a CPU: docs/RESULTS.md, "Speed", "Models").

Columns: parameters; forward GFLOP per image (torch.utils.flop_counter, a multiply-add counts 2);
training images/s (forward + backward + SGD step, train mode, random labels); inference images/s (eval
mode, torch.inference_mode). Figures depend on what else the machine runs: compare rows of one run.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import vrfer
from vrfer.models.registry import count_params

DEFAULT_MODELS = ["vrfer-cnn", "vrfer-cnn-small", "vgg-f", "vgg-face"]


def forward_flops(model, shape) -> float:
    model.eval()
    x = torch.zeros(1, *shape)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


def train_speed(model, shape, batch: int, steps: int, warmup: int) -> float:
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    x = torch.randn(batch, *shape)
    y = torch.randint(0, 8, (batch,))
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return batch * steps / (time.perf_counter() - t0)


def infer_speed(model, shape, batch: int, steps: int, warmup: int) -> float:
    model.eval()
    x = torch.randn(batch, *shape)
    with torch.inference_mode():
        for i in range(warmup + steps):
            if i == warmup:
                t0 = time.perf_counter()
            model(x)
    return batch * steps / (time.perf_counter() - t0)


def cases(models, native: bool):
    """(model name, label, create_model overrides) in the order measured."""
    for name in models:
        yield name, "48x48 full", {"image_size": 48, "input_mode": "full"}
        yield name, "24x48 visible-half", {"image_size": 48, "input_mode": "visible-half"}
    if native:  # models whose own input size is not 48x48 (vgg-f, vgg-face: 224; vgg13-barsoum: 64)
        for name in models:
            size = vrfer.models.get_config(name).image_size
            if size != 48:
                yield name, f"{size}x{size} native", {"input_mode": "full"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="registry names (default: %(default)s)")
    ap.add_argument("--batch", type=int, default=32, help="batch size at 48x48 / 24x48 (default 32)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per measurement (default 5)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps before timing (default 2)")
    ap.add_argument("--native-batch", type=int, default=8, help="batch size at a model's own size (default 8)")
    ap.add_argument("--native-steps", type=int, default=1, help="timed steps at a model's own size (default 1, no warm-up)")
    ap.add_argument("--no-native", action="store_true", help="skip the measurements at the models' own sizes")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {a.batch}, {a.warmup} warm-up + "
          f"{a.steps} timed steps" + ("" if a.no_native else f"; own size: batch {a.native_batch}, "
                                      f"{a.native_steps} timed step(s)"))
    head = f"{'model':<19} {'input':<20} {'params':>10} {'GFLOP/img':>10} {'train img/s':>12} {'infer img/s':>12}"
    print(head)
    print("-" * len(head))
    t_all = time.perf_counter()
    for name, label, over in cases(a.models, not a.no_native):
        model = vrfer.create_model(name, pretrained=False, **over)
        shape = model.cfg.input_shape
        native = "native" in label
        batch, steps, warmup = (a.native_batch, a.native_steps, 0) if native else (a.batch, a.steps, a.warmup)
        gflops = forward_flops(model, shape) / 1e9
        tr = train_speed(model, shape, batch, steps, warmup)
        inf = infer_speed(model, shape, batch, steps, warmup)
        print(f"{name:<19} {label:<20} {count_params(model):>10,} {gflops:>10.3f} {tr:>12.1f} {inf:>12.1f}", flush=True)
    print(f"total {time.perf_counter() - t_all:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
