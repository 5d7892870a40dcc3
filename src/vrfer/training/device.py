"""Where a run computes: the device and rank under `torchrun` (DistributedDataParallel: gloo on CPU, nccl on
CUDA), and whether bfloat16 autocast is on (recipe key `amp`)."""

from __future__ import annotations

import os

import torch
import torch.distributed as tdist


def dist_setup():
    """(world size, rank, device); under torchrun the process group is started here."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 1, 0, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not tdist.is_initialized():
        tdist.init_process_group(backend)
    rank = tdist.get_rank()
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return world, rank, torch.device("cuda", local)
    return world, rank, torch.device("cpu")


def ddp(model, world: int, device):
    """The model as the training steps call it: under torchrun, wrapped to average the gradients of the ranks."""
    if world <= 1:
        return model
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def barrier(world: int) -> None:
    """Under torchrun: wait until every rank got here."""
    if world > 1:
        tdist.barrier()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AMX tiles or AVX512_BF16), from /proc/cpuinfo's flags."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo", encoding="ascii", errors="replace")
                      if line.startswith("flags")), [])
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def autocast_bf16(setting: str, device) -> bool:
    """The recipe's `amp` for this device: bf16 autocast on a GPU, and on a CPU only where it is native
    (elsewhere it is emulated and slower than float32)."""
    if setting != "auto":
        return setting == "bf16"
    return device.type == "cuda" or cpu_has_native_bf16()
