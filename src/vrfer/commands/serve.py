"""`vrfer serve`: stream expression predictions to a VR app over WebSocket (protocol: docs/PROTOCOL.md).

    vrfer serve                                   # http://127.0.0.1:8765/ : demo page; ws://.../ws
    vrfer serve --camera 0                        # the server reads the webcam; apps listen on /ws/events
    vrfer serve --video clip.mp4 --face detect
    vrfer serve --host 0.0.0.0 --token s3cret     # reachable from the headset: a token is required
"""

from __future__ import annotations

import math
import os

from ..errors import VrferError
from ..threads import add_threads_option
from ._options import add_backend_arg, add_face_arg, add_model_arg, add_postprocess_args, add_profile_arg, model_source


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="live predictions over WebSocket/HTTP for VR apps, with a demo page",
                       description="Serve the model on a WebSocket (/ws: send JPEG/PNG frames, get one "
                                   "prediction event each), POST /predict, GET /health and /model, and a "
                                   "webcam demo page at /. See docs/PROTOCOL.md.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; any other needs --token)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    add_model_arg(p, onnx=True)
    add_backend_arg(p)
    add_face_arg(p)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--camera", type=int, metavar="INDEX",
                     help="read this camera and broadcast events to /ws/events subscribers")
    src.add_argument("--video", metavar="FILE", help="read this video file (looped) and broadcast its events")
    p.add_argument("--no-loop", action="store_true", help="play --video once instead of looping")
    p.add_argument("--source-fps", type=float, default=15.0, help="most frames per second read from the "
                   "camera/video (default 15)")
    p.add_argument("--token", default=os.environ.get("VRFER_TOKEN"),
                   help="clients must present it (?token= or Authorization: Bearer); default $VRFER_TOKEN")
    p.add_argument("--alpha", type=float, help="smoothing: EMA weight of the newest frame, (0, 1] (1: none; "
                   "default 0.4), as vrfer predict --smooth")
    p.add_argument("--threshold", type=float, help="smoothed probability a new label needs (default 0.5)")
    p.add_argument("--min-frames", type=int, help="consecutive frames the new label must lead (default 3)")
    p.add_argument("--min-seconds", type=float, help="seconds the new label must lead (default 0)")
    p.add_argument("--max-frame-bytes", type=int, default=None, help="largest frame accepted (default 2 MiB)")
    p.add_argument("--max-connections", type=int, default=64, help="WebSocket clients at once (default 64)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="browser origin allowed on the WebSockets without a token, e.g. "
                        "http://localhost:3000 (repeatable; '*' for any)")
    add_threads_option(p, default=1)
    add_postprocess_args(p)
    add_profile_arg(p)
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level")
    p.set_defaults(fn=run)


def build_config(a):
    from ..inference.pipeline import parse_face
    from ..inference.postprocess import read_prior_file
    from ..inputs import VIDEO_EXTS, check_video_file, is_video
    from ..serve.app import ServeConfig, check_bind
    from ..serve.protocol import DEFAULT_MAX_FRAME_BYTES, Params, ProtocolError

    if not 0 <= a.port <= 65535:
        raise VrferError(f"--port {a.port}: expected 0-65535")
    values = {k: v for k, v in (("alpha", a.alpha), ("threshold", a.threshold), ("min_frames", a.min_frames),
                                ("min_seconds", a.min_seconds), ("prior_tau", a.prior_tau),
                                ("classes", a.classes)) if v is not None}
    if a.prior in ("train", "uniform"):
        values["prior"] = a.prior
    elif a.prior is not None:                         # a file of class frequencies, read once here
        values["prior"] = read_prior_file(a.prior)
    try:
        params = Params().updated(values)
    except ProtocolError as e:
        raise VrferError(f"--{e.message.replace('_', '-')}") from None
    max_bytes = a.max_frame_bytes or DEFAULT_MAX_FRAME_BYTES
    if max_bytes < 1024:
        raise VrferError("--max-frame-bytes: at least 1024")
    if a.max_connections < 1:
        raise VrferError("--max-connections: at least 1")
    if not 0 < a.source_fps < math.inf:   # written so that nan fails too
        raise VrferError(f"--source-fps {a.source_fps}: must be a number > 0")
    if a.video is not None:
        try:
            check_video_file(a.video)                     # a folder or a pipe is not "not found"
        except VrferError as e:
            raise VrferError(f"{a.video}: {e}") from None
    if a.video is not None and not is_video(a.video):                  # the rule predict follows too
        raise VrferError(f"{a.video}: not a video file name: vrfer takes a file as a video by its extension "
                         f"({', '.join(sorted(VIDEO_EXTS))}), any other as an image")
    cfg = ServeConfig(model=model_source(a, a.backend), face=parse_face(a.face), backend=a.backend, profile=a.profile, host=a.host, port=a.port,
                      token=a.token or None, camera=a.camera, video=a.video, loop_video=not a.no_loop,
                      source_fps=a.source_fps, params=params, max_frame_bytes=max_bytes,
                      max_connections=a.max_connections, allow_origins=tuple(a.allow_origin),
                      threads=a.threads)
    check_bind(cfg)
    return cfg


def run(a) -> int:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise VrferError(f"vrfer serve needs starlette and uvicorn ({e.name} is missing): "
                         "pip install 'vrfer[serve]'") from None
    from ..serve.app import create_app, listen_socket, uvicorn_config

    cfg = build_config(a)
    sock = listen_socket(cfg)        # a busy port fails here, before the model loads or a banner is printed
    try:
        app = create_app(cfg)        # loads the model and opens the source: errors end here, cleanly
    except BaseException:
        sock.close()
        raise
    import uvicorn
    server = uvicorn.Server(uvicorn_config(app, cfg, a.log_level))
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    port = sock.getsockname()[1]
    print(f"vrfer serve: model {app.state.vrfer.model_info['name']}, http://{host}:{port}/ "
          f"(WebSocket ws://{host}:{port}/ws{', token required' if cfg.token else ''})", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0

