"""What `vrfer serve` is started with (ServeConfig) and what its connections share (ServerState): the model's
engine, counters, the camera source. Also the one check of where the server may listen (check_bind)."""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import itertools
import time
from dataclasses import dataclass, field

from ..errors import VrferError
from ..inference.postprocess import PostProcess
from ..pretrained import DEFAULT_MODEL
from .engine import InferenceEngine, Predictor
from .protocol import DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_PIXELS, Params, ProtocolError

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


@dataclass
class ServeConfig:
    model: str = DEFAULT_MODEL
    face: object = "detect"              # "detect" | "none" | (x, y, w, h)
    backend: str = "auto"
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    camera: int | None = None
    video: str | None = None
    loop_video: bool = True
    source_fps: float = 15.0
    params: Params = field(default_factory=Params)     # defaults for every connection
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_connections: int = 64
    max_pending: int = 64                # inference jobs waiting (beyond: "busy")
    outbox: int = 16                     # events waiting to be sent to one connection
    allow_origins: tuple = ()            # extra browser origins allowed on the WebSockets ("*": any)
    profile: str | None = None           # a calibration profile (vrfer.personal.calibration) for every connection
    threads: int | None = 1              # vrfer.threads: threads of the network and the detector (0: one per
                                         # core); 1 holds up when the cores are busy, and leaves one to the loop


def is_local_host(host: str) -> bool:
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(config: ServeConfig) -> None:
    """A server reachable from other machines must have a token."""
    if not is_local_host(config.host) and not config.token:
        raise VrferError(f"--host {config.host} is reachable from other machines: give --token "
                         "(or VRFER_TOKEN) so that clients must authenticate, or bind 127.0.0.1")


class ServerState:
    def __init__(self, config: ServeConfig, predictor: Predictor):
        self.config = config
        self.predictor = predictor
        self.engine = InferenceEngine(predictor, max_pending=config.max_pending, max_pixels=config.max_pixels)
        self.model_info = predictor.info()
        self.classes = tuple(predictor.cfg.classes)
        self.sessions: set = set()            # the open connections (vrfer.serve.connection.Connection)
        self.ids = itertools.count(1)
        self.started = time.time()
        self.counters = collections.Counter()
        self.source = None
        self.broadcast_task: asyncio.Task | None = None

    def snapshot(self) -> dict:
        c = self.counters
        return {
            "uptime_s": round(time.time() - self.started, 1),
            "connections": len(self.sessions),
            "frames_received": c["frames_received"], "frames_processed": c["frames_processed"],
            "frames_dropped": c["frames_dropped"], "events_dropped": c["events_dropped"],
            "errors": c["errors"], "http_predictions": c["http_predictions"], "auth_failures": c["auth_failures"],
            "engine": {"queue": self.engine.queue_size, "max_queue": self.engine.stats["max_queue"],
                       "max_pending": self.engine.max_pending, "jobs": self.engine.stats["jobs"],
                       "busy": self.engine.stats["busy"]},
            "source": None if self.source is None else {"name": self.source.name, **self.source.stats,
                                                        "broadcasts": c["broadcasts"]},
        }


def post_process(state: ServerState, params: Params) -> PostProcess:
    """The prior and class subset of a connection (or one POST /predict) -> PostProcess; ProtocolError."""
    try:
        return PostProcess(state.predictor.cfg, params.prior, params.prior_tau, params.classes or None)
    except VrferError as e:
        raise ProtocolError("bad_param", str(e)) from None
