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

The rooms: state.py (ServeConfig, ServerState), guard.py (token, origin, Host checks), connection.py (one
WebSocket connection; its wearer is a vrfer.inference.session.Session, as the API's), engine.py (the model's worker thread),
protocol.py (every message's shape), source.py (a camera or video the server reads), this file (routes, the
broadcast of the source's frames, the app).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..errors import VrferError
from ..inference.session import Session as WearerSession
from .connection import Connection
from .engine import EngineBusy, Predictor, Stream
from .guard import authorized, deny, guard, host_ok, origin_ok
from .protocol import (
    PROTOCOL_VERSION,
    ProtocolError,
    error_body,
    error_event,
    hello_event,
    prediction_event,
    source_ended_event,
)
from .state import ServeConfig, ServerState, check_bind, post_process
from ..threads import use_torch_threads
from .source import FrameSource

__all__ = ["ServeConfig", "ServerThread", "create_app", "check_bind", "uvicorn_config", "listen_socket"]

log = logging.getLogger("vrfer.serve")

STATIC = Path(__file__).with_name("static")
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403
CLOSE_BAD_PARAMS = 4400
CLOSE_TRY_AGAIN = 1013


# ------------------------------------------------------------------------------------------ HTTP

async def index(request: Request):
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def static_file(request: Request):
    name = request.path_params["name"]
    path = STATIC / name
    if "/" in name or name.startswith(".") or not path.is_file():
        return JSONResponse(error_body("not_found", "no such file"), status_code=404)
    return FileResponse(path, headers={"Cache-Control": "no-store"})


async def health(request: Request):
    state: ServerState = request.app.state.vrfer
    if not host_ok(state, request.headers):
        return deny(state, 403, "Host header is not a loopback name")
    return JSONResponse({"status": "ok", "model": state.model_info["name"], "protocol": PROTOCOL_VERSION,
                         "uptime_s": round(time.time() - state.started, 1), "connections": len(state.sessions),
                         "source": None if state.source is None else state.source.name,
                         "auth": bool(state.config.token)})


async def model_info(request: Request):
    if (denied := guard(request)) is not None:
        return denied
    return JSONResponse(request.app.state.vrfer.model_info)


async def stats(request: Request):
    if (denied := guard(request)) is not None:
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
    if (denied := guard(request)) is not None:
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
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


# ------------------------------------------------------------------------------------------ WebSocket

async def ws_frames(websocket: WebSocket):
    await _ws_session(websocket, listen_only=False)


async def ws_events(websocket: WebSocket):
    await _ws_session(websocket, listen_only=True)


async def _ws_session(websocket: WebSocket, listen_only: bool) -> None:
    state: ServerState = websocket.app.state.vrfer
    query = websocket.query_params
    if not host_ok(state, websocket.headers) or not origin_ok(state, websocket.headers):
        state.counters["auth_failures"] += 1
        await websocket.accept()
        await websocket.close(CLOSE_FORBIDDEN_ORIGIN, "origin not allowed")
        return
    if not authorized(state, websocket.headers, query):
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
        session = Connection(state, websocket, params, subscribed=False, listen_only=listen_only)
    except ProtocolError as e:
        await websocket.send_text(json.dumps(error_event(e.code, e.message)))
        await websocket.close(CLOSE_BAD_PARAMS, e.code)
        return
    subscribe = listen_only or query.get("subscribe", "0").lower() in ("1", "true", "yes")
    state.sessions.add(session)
    session.send(hello_event(session.id, state.model_info["name"], state.classes, params.to_dict(),
                             state.config.max_frame_bytes, None if state.source is None else state.source.name))
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
                        s.send(source_ended_event(name))
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
    use_torch_threads(config.threads)
    predictor = predictor or Predictor(config.model, config.face, config.backend, threads=config.threads,
                                       profile=config.profile)
    state = ServerState(config, predictor)
    try:
        post_process(state, config.params)      # the server's own --prior/--classes fit this model
    except ProtocolError as e:
        raise VrferError(e.message) from None
    if config.camera is not None or config.video is not None:
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
    return JSONResponse(error_body(code, f"{exc.detail}: {request.method} {request.url.path}"),
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
