"""How many CPU threads vrfer computes with: one meaning of `--threads N` for `vrfer predict`, `serve`,
`evaluate` and `Recognizer(threads=N)`.

N is the number of threads each computation (the expression network in PyTorch or onnxruntime, the face
detector in onnxruntime) runs on; they run one after the other, never at once. 0 means one per CPU core.
The default is 1 (DEFAULT_THREADS), chosen by measurement (docs/RESULTS.md, "Threads"): on an idle
2-core machine two threads gain little for one face per frame, and when the cores are busy (a VR PC
renders) a second thread makes every call wait for a core that is not free, several times slower.

onnxruntime's worker threads spin (busy-wait) after each run by default, so the detector's and the
classifier's pools fight over the cores; vrfer turns the spinning off (`session.intra_op.allow_spinning`
= 0) for every session it makes.
"""

from __future__ import annotations

import numbers
import os

from .errors import VrferError
from .options import int_in, out_of_range

DEFAULT_THREADS = 1
# more threads than cores only makes them wait for each other (and 100000 threads take minutes to start)
MAX_THREADS = os.cpu_count() or 1
THREADS_NOTE = f"0: one per CPU core; this machine has {MAX_THREADS}"
THREADS_HELP = (f"CPU threads of each computation (network, face detector), 0 to {MAX_THREADS}; 0: one per core "
                f"(default {DEFAULT_THREADS}: holds up when other work keeps the cores busy; see docs/RESULTS.md)")
ALLOW_SPINNING = False      # benchmarks flip it to measure what the spinning costs


def add_threads_option(parser, default: int | None = None) -> None:
    """`--threads N` of predict, serve and evaluate: its range is checked by argparse, as resolve() does."""
    parser.add_argument("--threads", type=int_in(0, MAX_THREADS, THREADS_NOTE), default=default, metavar="N",
                        help=THREADS_HELP)


def resolve(threads: int | None) -> int:
    """None -> DEFAULT_THREADS, 0 -> one per CPU core, N -> N (VrferError outside 0..MAX_THREADS)."""
    if threads is None:
        return DEFAULT_THREADS
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral):
        raise VrferError(f"threads={threads!r}: expected a whole number, 0 to {MAX_THREADS} ({THREADS_NOTE})")
    why = out_of_range(threads, 0, MAX_THREADS, THREADS_NOTE)
    if why:
        raise VrferError(f"threads={threads}: {why}")
    return int(threads) or MAX_THREADS


def use_torch_threads(threads: int | None) -> int:
    """Set PyTorch's intra-op threads (process-wide) to resolve(threads); returns the number."""
    import torch
    n = resolve(threads)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def ort_options(threads: int | None):
    """onnxruntime SessionOptions with resolve(threads) intra-op threads, one inter-op thread and no
    spinning, quiet logs and all graph optimisations."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = resolve(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if not ALLOW_SPINNING:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts


__all__ = ["DEFAULT_THREADS", "MAX_THREADS", "add_threads_option", "resolve", "use_torch_threads", "ort_options"]
