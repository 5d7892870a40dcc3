"""`vrfer serve`: a Starlette app that streams expression predictions over WebSocket.

Routes (docs/PROTOCOL.md has the message shapes):

    GET  /            the demo page (webcam -> server -> live probability bars)
    GET  /health      liveness + counters (no token needed; says nothing about faces)
    GET  /model       model name, classes, input, version
    GET  /stats       server counters and one row per connection
    POST /predict     one image (raw body or multipart) -> JSON
    WS   /ws          send frames, receive one "prediction" event per processed frame (+ "change")
    WS   /ws/events   listen only: events for the server's own --camera/--video

Concurrency: the event loop only moves bytes. Decoding and inference run on one worker thread
(InferenceEngine). Each connection keeps only its newest unprocessed frame (older ones are dropped and
counted) and a short outbox (oldest predictions dropped first), so a slow or stalled client costs a
bounded amount of memory and never holds up the others.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import hmac
import ipaddress
import itertools
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..classes import class_name
from ..errors import VrferError
from ..postprocess import PostProcess
from ..pretrained import DEFAULT_MODEL
from ..session import AUTO, MAX_CAPTURED
from ..session import Session as WearerSession
from .engine import EngineBusy, FrameResult, InferenceEngine, Predictor, Stream
from .protocol import (
    CALIBRATE_ACTIONS,
    REFERENCE_ACTIONS,
    CAPTURE_FRAMES,
    DEFAULT_MAX_FRAME_BYTES,
    MAX_CAPTURE_FRAMES,
    DEFAULT_MAX_PIXELS,
    PROTOCOL_VERSION,
    Debouncer,
    Params,
    ProtocolError,
    change_event,
    error_event,
    parse_client_message,
    prediction_event,
)

log = logging.getLogger("vrfer.serve")

STATIC = Path(__file__).with_name("static")
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403
CLOSE_BAD_PARAMS = 4400
CLOSE_TRY_AGAIN = 1013


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
    profile: str | None = None           # a calibration profile (vrfer.calibration) for every connection
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


# ------------------------------------------------------------------------------------------ state

class ServerState:
    def __init__(self, config: ServeConfig, predictor: Predictor):
        self.config = config
        self.predictor = predictor
        self.engine = InferenceEngine(predictor, max_pending=config.max_pending, max_pixels=config.max_pixels)
        self.model_info = predictor.info()
        self.classes = tuple(predictor.cfg.classes)
        self.sessions: set[Session] = set()
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


class Session:
    """One WebSocket connection: its parameters, smoothing, newest pending frame and outbox."""

    def __init__(self, state: ServerState, ws: WebSocket, params: Params, subscribed: bool, listen_only: bool):
        self.state, self.ws = state, ws
        self.id = next(state.ids)
        self.post = post_process(state, params)
        self.params = params
        self.subscribed = subscribed
        self.listen_only = listen_only
        self.frame_seq = 0
        self.pending: tuple | None = None
        self.wake = asyncio.Event()
        self.outbox: collections.deque = collections.deque()
        self.out_wake = asyncio.Event()
        self.stats = collections.Counter()
        self.max_outbox = 0
        self.stream = Stream(track=params.track)                       # face tracking of own frames
        # the wearer's session (vrfer.session: the one path of the API and serve): profile, reference (a fixed
        # one, a profile's or the server's --profile's; else a running one learnt from this connection's own
        # frames when the model has a referenced head), calibration capture, prior and smoothing. Channel None:
        # this connection's own frames; "source": the server's broadcast camera
        pipe = state.predictor.pipeline
        self.wearer = WearerSession(pipe, self.post, params.alpha, AUTO if pipe.referenced_head is not None else None,
                                    max_captured=MAX_CAPTURED)
        self.debouncers = {None: self._debouncer(), "source": self._debouncer()}

    @property
    def wants_representation(self) -> bool:
        return self.wearer.wants_representation()

    def _debouncer(self) -> Debouncer:
        p = self.params
        return Debouncer(self.state.classes, p.threshold, p.min_frames, p.min_seconds)

    def apply_params(self, params: Params) -> None:
        self.post = post_process(self.state, params)
        self.params = params
        self.stream.track = params.track
        self.wearer.post = self.post
        self.wearer.set_alpha(params.alpha)
        for deb in self.debouncers.values():
            deb.threshold, deb.min_frames, deb.min_seconds = params.threshold, params.min_frames, params.min_seconds

    def reset(self) -> None:
        self.stream.reset()
        self.wearer.reset()
        for deb in self.debouncers.values():
            deb.reset()

    # --- outgoing
    def send(self, event: dict) -> None:
        """Queue an event; when the outbox is full the oldest prediction event gives way."""
        if len(self.outbox) >= self.state.config.outbox:
            for i, ev in enumerate(self.outbox):
                if ev.get("type") == "prediction":
                    del self.outbox[i]
                    break
            else:
                self.outbox.popleft()
            self.stats["events_dropped"] += 1
            self.state.counters["events_dropped"] += 1
        self.outbox.append(event)
        self.max_outbox = max(self.max_outbox, len(self.outbox))
        self.out_wake.set()

    def error(self, code: str, message: str, frame=None) -> None:
        self.stats["errors"] += 1
        self.state.counters["errors"] += 1
        self.send(error_event(code, message, frame))

    async def sender(self) -> None:
        while True:
            await self.out_wake.wait()
            self.out_wake.clear()
            while self.outbox:
                event = self.outbox.popleft()
                await self.ws.send_text(json.dumps(event, separators=(",", ":")))

    # --- incoming
    def on_frame(self, data: bytes, frame_id=None) -> None:
        self.frame_seq += 1
        fid = self.frame_seq if frame_id is None else frame_id
        self.stats["received"] += 1
        self.state.counters["frames_received"] += 1
        if self.listen_only:
            self.error("bad_message", "this endpoint only sends events; send frames to /ws", fid)
            return
        limit = self.state.config.max_frame_bytes
        if len(data) > limit:
            self.error("frame_too_large", f"frame of {len(data)} bytes; the limit is {limit} bytes", fid)
            return
        if self.pending is not None:   # the model has not got to the previous frame yet: it is stale
            self.stats["dropped"] += 1
            self.state.counters["frames_dropped"] += 1
        self.pending = (fid, bytes(data), time.perf_counter())
        self.wake.set()

    def on_text(self, text: str) -> None:
        try:
            msg = parse_client_message(text)
            kind = msg["type"]
            if kind == "frame":
                self._frame_message(msg)
            elif kind == "config":
                self.apply_params(self.params.updated({k: v for k, v in msg.items() if k != "type"}, strict=True))
                self.send({"type": "config", "config": self.params.to_dict()})
            elif kind == "subscribe":
                if self.state.source is None:
                    raise ProtocolError("no_source", "this server reads no camera or video "
                                                     "(start it with --camera or --video); send frames instead")
                self.subscribed = True
                self.send({"type": "subscribed", "source": self.state.source.name})
            elif kind == "unsubscribe":
                self.subscribed = False
                self.send({"type": "unsubscribed"})
            elif kind == "reset":
                self.reset()
                self.send({"type": "reset"})
            elif kind == "ping":
                self.send({"type": "pong", "time": round(time.time(), 4), "id": client_id(msg)})
            elif kind == "stats":
                self.send({"type": "stats", **self.stats_row()})
            elif kind == "calibrate":
                self._calibrate(msg)
            elif kind == "reference":
                self._reference(msg)
        except ProtocolError as e:
            self.error(e.code, e.message)

    def _reference_state(self) -> dict:
        w = self.wearer
        vec = w.reference_vector
        return {"type": "reference", "mode": w.reference_mode, "settled": vec is not None,
                "frames": int(w.running.count) if w.reference_mode == AUTO else None,
                "reference": None if vec is None else [round(float(v), 6) for v in vec]}

    def _reference(self, msg: dict) -> None:
        """The "reference" message (docs/PROTOCOL.md): get, set (the D numbers, or a profile carrying them), clear
        (none) or auto (a running reference from this connection's frames)."""
        from ..reference import check_reference
        action = msg.get("action")
        if action not in REFERENCE_ACTIONS:
            raise ProtocolError("bad_message", f"reference needs \"action\": one of {', '.join(REFERENCE_ACTIONS)}")
        pipe = self.state.predictor.pipeline
        if action in ("set", "auto") and pipe.referenced_head is None:
            raise ProtocolError("bad_param", f"reference {action}: model {pipe.cfg.name!r} has no referenced head")
        if action == "set":
            try:
                if isinstance(msg.get("profile"), dict):
                    prof = pipe.check_profile(msg["profile"], "reference set")
                    if prof.reference is None:
                        raise VrferError("reference set: the profile carries no reference")
                    vec = prof.reference
                else:
                    vec = msg.get("reference")
                    if not isinstance(vec, list) or len(vec) > 100_000:
                        raise VrferError("reference set: \"reference\" must be a list of numbers (or give \"profile\")")
                    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vec):
                        raise VrferError("reference set: \"reference\" must hold numbers only")
                self.wearer.set_reference(check_reference(vec, pipe.representation_width(), "reference set"))
            except VrferError as e:
                raise ProtocolError("bad_param", str(e)) from None
        elif action == "clear":
            self.wearer.clear_reference()
        elif action == "auto":
            self.wearer.clear_reference()
            self.wearer.set_reference(AUTO)
        self.send(self._reference_state())

    def _calibrate(self, msg: dict) -> None:
        """The "calibrate" message (docs/PROTOCOL.md): capture frames of one expression, make the profile from
        what was captured, load a saved one, or clear it."""
        action = msg.get("action")
        if action not in CALIBRATE_ACTIONS:
            raise ProtocolError("bad_message", f"calibrate needs \"action\": one of {', '.join(CALIBRATE_ACTIONS)}")
        w = self.wearer
        if action == "start":
            label, frames = msg.get("label"), msg.get("frames", CAPTURE_FRAMES)
            if isinstance(label, str) and label not in self.state.classes:
                label = class_name(label)       # the spellings labels.csv and `vrfer calibrate` take ("happy")
            if label not in self.state.classes:
                raise ProtocolError("bad_param", f"calibrate start: \"label\" must be one of "
                                                 f"{', '.join(self.state.classes)}")
            if isinstance(frames, bool) or not isinstance(frames, int) or not 1 <= frames <= MAX_CAPTURE_FRAMES:
                raise ProtocolError("bad_param", f"calibrate start: \"frames\" must be a whole number, 1 to "
                                                 f"{MAX_CAPTURE_FRAMES}")
            if len(w.captured[1]) >= MAX_CAPTURED:
                raise ProtocolError("bad_param", f"calibrate start: {MAX_CAPTURED} faces captured already, the most "
                                                 "a connection keeps: send calibrate finish or clear")
            w.start_capture(label, frames)
            self.send({"type": "calibration", "action": "start", "label": label, "frames": frames})
        elif action == "stop":
            w.stop_capture()
            self.send({"type": "calibration", "action": "stop", "counts": w.capture_counts()})
        elif action == "clear":
            w.clear_calibration()
            self.send({"type": "calibration", "action": "clear"})
        elif action == "finish":
            if not w.captured[1]:
                raise ProtocolError("bad_message", "calibrate finish: no face captured yet (send calibrate start "
                                                   "with a label, then frames)")
            profile = w.finish(person=str(msg.get("person", ""))[:64])
            self.send({"type": "profile", "profile": profile.to_json()})
        else:   # load
            try:
                prof = msg.get("profile")
                if not isinstance(prof, dict):               # a JSON object, never a path a client names
                    raise VrferError("calibrate load: damaged profile (not a vrfer profile: a JSON object is needed)")
                prof = w.pipeline.check_profile(prof, "calibrate load")     # vrfer.profile_check, against this model
            except VrferError as e:
                raise ProtocolError("bad_param", str(e)) from None
            w.set_profile(prof)
            self.send({"type": "profile", "profile": prof.to_json()})

    def _frame_message(self, msg: dict) -> None:
        data = msg.get("data")
        if not isinstance(data, str):
            raise ProtocolError("bad_message", "a frame message needs \"data\": the image as base64")
        if data.startswith("data:"):
            data = data.split(",", 1)[-1]
        if len(data) > self.state.config.max_frame_bytes * 4 // 3 + 8:
            self.frame_seq += 1
            self.stats["received"] += 1
            raise ProtocolError("frame_too_large", f"frame larger than {self.state.config.max_frame_bytes} bytes")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("bad_image", "\"data\" is not valid base64") from None
        self.on_frame(raw, client_id(msg))

    async def processor(self) -> None:
        engine = self.state.engine
        while True:
            await self.wake.wait()
            self.wake.clear()
            if self.pending is None:
                continue
            fid, data, t0 = self.pending
            self.pending = None
            try:
                result = await engine.infer(data, crop=self.params.crop, stream=self.stream,
                                            rep=self.wants_representation)
            except ProtocolError as e:
                self.error(e.code, e.message, fid)
                continue
            except EngineBusy as e:
                self.stats["dropped"] += 1
                self.state.counters["frames_dropped"] += 1
                self.error("busy", str(e), fid)
                continue
            self.stats["processed"] += 1
            self.state.counters["frames_processed"] += 1
            self.deliver(result, fid, (time.perf_counter() - t0) * 1000, None)

    def deliver(self, result: FrameResult, fid, latency_ms: float, source: str | None) -> None:
        channel = "source" if source else None
        preds = self.wearer.answer(result.faces, fid, source or "", stream=True, channel=channel)
        if self.wearer.just_captured is not None:
            self.send({"type": "calibration", "action": "captured", "label": self.wearer.just_captured,
                       "counts": self.wearer.capture_counts()})
        deb = self.debouncers[channel]
        change = deb.update(list(preds[0].smoothed.values())) if preds else None
        crop = result.crop if self.params.crop else None
        self.send(prediction_event(fid, preds, latency_ms=latency_ms, dropped=self.stats["dropped"], source=source,
                                   crop=crop, stable=deb.current, arrays=self.params.arrays))
        if change is not None:
            self.send(change_event(fid, change, 0, source))

    def stats_row(self) -> dict:
        """This connection's counters. No "id" here: in a WebSocket answer "id" is the client's own (ping ->
        pong); GET /stats adds the connection's number, hello's "session", as "id"."""
        return {"received": self.stats["received"], "processed": self.stats["processed"],
                "dropped": self.stats["dropped"], "errors": self.stats["errors"],
                "events_dropped": self.stats["events_dropped"], "pending": int(self.pending is not None),
                "outbox": len(self.outbox), "max_outbox": self.max_outbox, "subscribed": self.subscribed,
                "captured": len(self.wearer.captured[1])}


def client_id(msg: dict):
    """A message's "id" (frame, ping), which comes back in the answer: a whole number or a string of up to
    64 characters, or None (true/false is no id, though JSON's true is a number to Python)."""
    fid = msg.get("id")
    if fid is None or (isinstance(fid, int) and not isinstance(fid, bool)) or (isinstance(fid, str) and len(fid) <= 64):
        return fid
    raise ProtocolError("bad_message", "\"id\" must be a whole number or a string of up to 64 characters")


# ------------------------------------------------------------------------------------------ auth

def _presented_token(headers, query) -> str | None:
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return query.get("token")


def _authorized(state: ServerState, headers, query) -> bool:
    token = state.config.token
    if not token:
        return True
    given = _presented_token(headers, query)
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def _origin_ok(state: ServerState, headers) -> bool:
    """Browsers send Origin; a page from another site must not read this machine's camera events.
    Non-browser clients (no Origin), the server's own pages and --allow-origin entries pass."""
    origin = headers.get("origin")
    if not origin or state.config.token:          # with a token, the token is the check
        return True
    allowed = state.config.allow_origins
    if "*" in allowed or origin in allowed:
        return True
    return urlsplit(origin).netloc.lower() == headers.get("host", "").lower()


def _host_ok(state: ServerState, headers) -> bool:
    """Bound to loopback without a token: only loopback Host headers (no DNS rebinding)."""
    if state.config.token or not is_local_host(state.config.host):
        return True
    host = headers.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name.lower() in LOCAL_HOSTS or is_local_host(name)


def _deny(state: ServerState, status: int, message: str) -> JSONResponse:
    state.counters["auth_failures"] += 1
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"type": "error", "code": "unauthorized" if status == 401 else "forbidden",
                         "message": message}, status_code=status, headers=headers)


def _guard(request: Request) -> JSONResponse | None:
    state: ServerState = request.app.state.vrfer
    if not _host_ok(state, request.headers):
        return _deny(state, 403, "Host header is not a loopback name")
    if not _authorized(state, request.headers, request.query_params):
        return _deny(state, 401, "token required: ?token=... or Authorization: Bearer ...")
    return None


# ------------------------------------------------------------------------------------------ HTTP

async def index(request: Request):
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def static_file(request: Request):
    name = request.path_params["name"]
    path = STATIC / name
    if "/" in name or name.startswith(".") or not path.is_file():
        return JSONResponse({"type": "error", "code": "not_found", "message": "no such file"}, status_code=404)
    return FileResponse(path, headers={"Cache-Control": "no-store"})


async def health(request: Request):
    state: ServerState = request.app.state.vrfer
    if not _host_ok(state, request.headers):
        return _deny(state, 403, "Host header is not a loopback name")
    return JSONResponse({"status": "ok", "model": state.model_info["name"], "protocol": PROTOCOL_VERSION,
                         "uptime_s": round(time.time() - state.started, 1), "connections": len(state.sessions),
                         "source": None if state.source is None else state.source.name,
                         "auth": bool(state.config.token)})


async def model_info(request: Request):
    if (denied := _guard(request)) is not None:
        return denied
    return JSONResponse(request.app.state.vrfer.model_info)


async def stats(request: Request):
    if (denied := _guard(request)) is not None:
        return denied
    state: ServerState = request.app.state.vrfer
    return JSONResponse({**state.snapshot(), "sessions": [{"id": s.id, **s.stats_row()} for s in list(state.sessions)]})


def _query(params) -> dict:
    """A request's query as a dict; ProtocolError for a name given twice (one of the values was dropped)."""
    names = [k for k, _ in params.multi_items()]
    twice = next((k for k in names if names.count(k) > 1), None)
    if twice is not None:
        raise ProtocolError("bad_param", f"{str(twice)[:40]!r} given {names.count(twice)} times in the query")
    return dict(params)


async def _read_body(request: Request, limit: int) -> bytes:
    n = request.headers.get("content-length")
    if n is not None and n.isdigit() and int(n) > limit:
        raise ProtocolError("frame_too_large", f"body of {n} bytes; the limit is {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ProtocolError("frame_too_large", f"body larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def predict(request: Request):
    if (denied := _guard(request)) is not None:
        return denied
    state: ServerState = request.app.state.vrfer
    t0 = time.perf_counter()
    limit = state.config.max_frame_bytes
    try:
        query = _query(request.query_params)
        state.config.params.updated(query, strict=True, also=("token",))       # a misspelt name is refused
        q = state.config.params.updated({k: v for k, v in query.items()
                                         if k in ("crop", "arrays", "prior", "prior_tau", "classes")})
        post = post_process(state, q)
        crop = q.crop
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            data = await _multipart_image(request, limit)
        else:
            data = await _read_body(request, limit)
        one = WearerSession(state.predictor.pipeline, post)       # one photo: the server's profile, no stream
        result = await state.engine.infer(data, crop=crop, rep=one.wants_representation(stream=False))
    except ProtocolError as e:
        status = {"frame_too_large": 413, "image_too_large": 413, "internal": 500}.get(e.code, 400)
        return _error_response(state, status, e.code, e.message)
    except EngineBusy as e:
        return _error_response(state, 503, "busy", str(e), {"Retry-After": "1"})
    state.counters["http_predictions"] += 1
    ev = prediction_event(None, one.answer(result.faces, stream=False), latency_ms=(time.perf_counter() - t0) * 1000,
                          crop=result.crop if crop else None, arrays=q.arrays)
    del ev["frame"], ev["stable"]
    ev["width"], ev["height"] = result.width, result.height
    ev["model"] = state.model_info["name"]
    return JSONResponse(ev)


async def _multipart_image(request: Request, limit: int) -> bytes:
    body = await _read_body(request, limit + 64 * 1024)   # bounded, whatever the multipart parser does

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        async with Request(request.scope, replay).form(max_files=4, max_fields=16, max_part_size=limit) as form:
            upload = None
            for key in ("image", "file", "frame"):
                if hasattr(form.get(key), "read"):
                    upload = form.get(key)
                    break
            if upload is None:
                upload = next((v for _, v in form.multi_items() if hasattr(v, "read")), None)
            if upload is None:
                raise ProtocolError("bad_message", "multipart body has no file part (name it \"image\")")
            data = await upload.read(limit + 1)
    except ProtocolError:
        raise
    except Exception as e:   # malformed multipart, part too large...
        raise ProtocolError("bad_message", f"cannot read the multipart body ({str(e)[:200]})") from None
    if len(data) > limit:
        raise ProtocolError("frame_too_large", f"image larger than the limit of {limit} bytes")
    return data


def _error_response(state, status, code, message, headers=None):
    state.counters["errors"] += 1
    return JSONResponse({"type": "error", "code": code, "message": message}, status_code=status, headers=headers)


# ------------------------------------------------------------------------------------------ WebSocket

async def ws_frames(websocket: WebSocket):
    await _ws_session(websocket, listen_only=False)


async def ws_events(websocket: WebSocket):
    await _ws_session(websocket, listen_only=True)


async def _ws_session(websocket: WebSocket, listen_only: bool) -> None:
    state: ServerState = websocket.app.state.vrfer
    query = websocket.query_params
    if not _host_ok(state, websocket.headers) or not _origin_ok(state, websocket.headers):
        state.counters["auth_failures"] += 1
        await websocket.accept()
        await websocket.close(CLOSE_FORBIDDEN_ORIGIN, "origin not allowed")
        return
    if not _authorized(state, websocket.headers, query):
        state.counters["auth_failures"] += 1
        await websocket.accept()
        await websocket.close(CLOSE_UNAUTHORIZED, "token required")
        return
    if len(state.sessions) >= state.config.max_connections:
        await websocket.accept()
        await websocket.close(CLOSE_TRY_AGAIN, "too many connections")
        return
    await websocket.accept()
    try:
        params = state.config.params.updated(_query(query), strict=True, also=("token", "subscribe"))
        session = Session(state, websocket, params, subscribed=False, listen_only=listen_only)
    except ProtocolError as e:
        await websocket.send_text(json.dumps(error_event(e.code, e.message)))
        await websocket.close(CLOSE_BAD_PARAMS, e.code)
        return
    subscribe = listen_only or query.get("subscribe", "0").lower() in ("1", "true", "yes")
    state.sessions.add(session)
    session.send({"type": "hello", "protocol": PROTOCOL_VERSION, "session": session.id,
                  "model": state.model_info["name"], "classes": list(state.classes),
                  "config": params.to_dict(), "max_frame_bytes": state.config.max_frame_bytes,
                  "source": None if state.source is None else state.source.name})
    if subscribe:
        session.on_text('{"type": "subscribe"}')
    tasks = [asyncio.create_task(session.sender()), asyncio.create_task(session.processor())]
    try:
        while True:
            receive = asyncio.ensure_future(websocket.receive())
            done, _ = await asyncio.wait([receive, *tasks], return_when=asyncio.FIRST_COMPLETED)
            if receive not in done:   # the sender failed (client gone): stop
                receive.cancel()
                break
            msg = receive.result()
            if msg["type"] == "websocket.disconnect":
                break
            if msg.get("bytes") is not None:
                session.on_frame(msg["bytes"])
            elif msg.get("text") is not None:
                session.on_text(msg["text"])
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
    finally:
        state.sessions.discard(session)
        for t in tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                exc = t.exception()
                if not isinstance(exc, (WebSocketDisconnect, RuntimeError, OSError)):
                    log.error("connection %s ended by an error", session.id, exc_info=exc)
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# ------------------------------------------------------------------------------------------ broadcast

async def _broadcast(state: ServerState) -> None:
    """Take the source's newest frame whenever the model is free; send each subscriber its events."""
    src = state.source
    loop = asyncio.get_running_loop()
    name = src.name
    stream = Stream(track=True)
    while True:
        got = await loop.run_in_executor(None, src.take, 0.5)
        if got is None:
            if src.ended:
                for s in list(state.sessions):
                    if s.subscribed:
                        s.send({"type": "source_ended", "source": name, "time": round(time.time(), 4)})
                return
            continue
        seq, frame = got
        listeners = [s for s in state.sessions if s.subscribed]
        if not listeners:
            continue
        t0 = time.perf_counter()
        try:
            result = await state.engine.infer(frame, crop=any(s.params.crop for s in listeners), stream=stream,
                                              rep=any(s.wants_representation for s in listeners))
        except (ProtocolError, EngineBusy) as e:
            log.warning("source frame %s: %s", seq, e)
            continue
        state.counters["broadcasts"] += 1
        ms = (time.perf_counter() - t0) * 1000
        for s in list(state.sessions):
            if s.subscribed:
                s.deliver(result, seq, ms, name)


# ------------------------------------------------------------------------------------------ the app

def create_app(config: ServeConfig, predictor: Predictor | None = None) -> Starlette:
    """Load the model (raises VrferError for a bad model/source) and build the ASGI app."""
    from contextlib import asynccontextmanager
    check_bind(config)
    from ..threads import use_torch_threads
    use_torch_threads(config.threads)
    predictor = predictor or Predictor(config.model, config.face, config.backend, threads=config.threads,
                                       profile=config.profile)
    state = ServerState(config, predictor)
    try:
        post_process(state, config.params)      # the server's own --prior/--classes fit this model
    except ProtocolError as e:
        raise VrferError(e.message) from None
    if config.camera is not None or config.video is not None:
        from .source import FrameSource
        state.source = FrameSource(config.camera, config.video, loop=config.loop_video, max_fps=config.source_fps)

    @asynccontextmanager
    async def lifespan(app):
        state.engine.start()
        if state.source is not None:
            state.source.start()
            state.broadcast_task = asyncio.create_task(_broadcast(state))
        try:
            yield
        finally:
            if state.broadcast_task is not None:
                state.broadcast_task.cancel()
            if state.source is not None:
                await asyncio.get_running_loop().run_in_executor(None, state.source.stop)
            state.engine.stop()

    routes = [
        Route("/", index), Route("/static/{name}", static_file),
        Route("/health", health), Route("/model", model_info), Route("/stats", stats),
        Route("/predict", predict, methods=["POST"]),
        WebSocketRoute("/ws", ws_frames), WebSocketRoute("/ws/events", ws_events),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error})
    app.state.vrfer = state
    return app


async def _http_error(request: Request, exc: HTTPException):
    """Unknown paths and methods answer in JSON too, like every other error (docs/PROTOCOL.md)."""
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse({"type": "error", "code": code, "message": f"{exc.detail}: {request.method} {request.url.path}"},
                        status_code=exc.status_code, headers=exc.headers)


def uvicorn_config(app, config: ServeConfig, log_level: str = "info"):
    import uvicorn
    return uvicorn.Config(
        app, host=config.host, port=config.port, log_level=log_level, access_log=False,
        ws="websockets-sansio",            # waits for the socket to drain before each send (back-pressure)
        ws_max_size=max(4 * config.max_frame_bytes, 1 << 20),  # larger messages close the socket (1009)
        ws_per_message_deflate=False,      # frames are JPEG/PNG already
        limit_concurrency=max(256, 4 * config.max_connections), timeout_keep_alive=5,
        lifespan="on")


def listen_socket(config: ServeConfig):
    """The server's listening socket, bound now (port 0: a free one, without a race): "address in use" is one
    line (VrferError) before anything starts. `vrfer serve` and ServerThread both listen on it."""
    import socket
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((config.host, config.port))
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError as e:
        sock.close()
        raise VrferError(f"cannot listen on {config.host}:{config.port} ({e.strerror or e})") from None
    return sock


class ServerThread:
    """Run the app with uvicorn in a background thread (tests, benchmarks, embedding in a tool).

    The socket is bound here, so port 0 picks a free port without a race; `.port` and `.url` tell it.
    """

    def __init__(self, app, config: ServeConfig, log_level: str = "warning"):
        import uvicorn
        self.server = uvicorn.Server(uvicorn_config(app, config, log_level))
        self.sock = listen_socket(config)
        self.port = self.sock.getsockname()[1]
        host = f"[{config.host}]" if ":" in config.host else config.host
        self.url = f"http://{host}:{self.port}"
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="vrfer-serve", daemon=True)

    def start(self, timeout: float = 30.0) -> "ServerThread":
        self.thread.start()
        t = time.monotonic()
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() - t > timeout:
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

