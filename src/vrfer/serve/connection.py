"""One WebSocket connection of `vrfer serve`: its parameters, newest pending frame, outbox and counters, and the
messages it takes (docs/PROTOCOL.md). Its wearer is answered by vrfer.inference.session.Session, the object the Python API
uses (capture, profile, reference, prior, smoothing): a connection adds only transport, and the change events
(vrfer.serve.protocol.Debouncer)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import json
import time

from starlette.websockets import WebSocket

from ..classes import class_name
from ..errors import VrferError
from ..inference.session import AUTO, MAX_CAPTURED
from ..inference.session import Session as WearerSession
from .engine import EngineBusy, FrameResult, Stream
from .protocol import (
    CALIBRATE_ACTIONS,
    CAPTURE_FRAMES,
    MAX_CAPTURE_FRAMES,
    REFERENCE_ACTIONS,
    Debouncer,
    Params,
    ProtocolError,
    calibration_event,
    change_event,
    config_event,
    error_event,
    parse_client_message,
    pong_event,
    prediction_event,
    profile_event,
    reference_event,
    reset_event,
    stats_event,
    subscribed_event,
    unsubscribed_event,
)
from .state import ServerState, post_process
from ..personal.reference import check_reference


class Connection:
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
        # the wearer's session (vrfer.inference.session: the one path of the API and serve): profile, reference (a fixed
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
                self.send(config_event(self.params.to_dict()))
            elif kind == "subscribe":
                if self.state.source is None:
                    raise ProtocolError("no_source", "this server reads no camera or video "
                                                     "(start it with --camera or --video); send frames instead")
                self.subscribed = True
                self.send(subscribed_event(self.state.source.name))
            elif kind == "unsubscribe":
                self.subscribed = False
                self.send(unsubscribed_event())
            elif kind == "reset":
                self.reset()
                self.send(reset_event())
            elif kind == "ping":
                self.send(pong_event(client_id(msg)))
            elif kind == "stats":
                self.send(stats_event(self.stats_row()))
            elif kind == "calibrate":
                self._calibrate(msg)
            elif kind == "reference":
                self._reference(msg)
        except ProtocolError as e:
            self.error(e.code, e.message)

    def _reference_state(self) -> dict:
        w = self.wearer
        return reference_event(w.reference_mode, w.reference_vector,
                               int(w.running.count) if w.reference_mode == AUTO else None)

    def _reference(self, msg: dict) -> None:
        """The "reference" message (docs/PROTOCOL.md): get, set (the D numbers, or a profile carrying them), clear
        (none) or auto (a running reference from this connection's frames)."""
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
            self.send(calibration_event("start", label, frames))
        elif action == "stop":
            w.stop_capture()
            self.send(calibration_event("stop", counts=w.capture_counts()))
        elif action == "clear":
            w.clear_calibration()
            self.send(calibration_event("clear"))
        elif action == "finish":
            if not w.captured[1]:
                raise ProtocolError("bad_message", "calibrate finish: no face captured yet (send calibrate start "
                                                   "with a label, then frames)")
            profile = w.finish(person=str(msg.get("person", ""))[:64])
            self.send(profile_event(profile.to_json()))
        else:   # load
            try:
                prof = msg.get("profile")
                if not isinstance(prof, dict):               # a JSON object, never a path a client names
                    raise VrferError("calibrate load: damaged profile (not a vrfer profile: a JSON object is needed)")
                prof = w.pipeline.check_profile(prof, "calibrate load")     # vrfer.personal.profile_check, against this model
            except VrferError as e:
                raise ProtocolError("bad_param", str(e)) from None
            w.set_profile(prof)
            self.send(profile_event(prof.to_json()))

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
            self.send(calibration_event("captured", self.wearer.just_captured, counts=self.wearer.capture_counts()))
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
