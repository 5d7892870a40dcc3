"""`vrfer serve`: live expression predictions over WebSocket/HTTP for VR apps (see docs/PROTOCOL.md).

    from vrfer.serve import ServeConfig, ServerThread, create_app
    cfg = ServeConfig(model="vrfer-lower", face="detect", port=0)
    with ServerThread(create_app(cfg), cfg) as server:
        print(server.url)

Starlette and uvicorn are imported only when the app is used (vrfer.serve.protocol needs neither).
"""

_APP = ("ServeConfig", "ServerThread", "create_app")
_PROTOCOL = ("PROTOCOL_VERSION", "Debouncer", "Params")
__all__ = list(_APP + _PROTOCOL) + ["Smoother"]


def __getattr__(name):
    if name in _APP:
        from . import app
        return getattr(app, name)
    if name in _PROTOCOL:
        from . import protocol
        return getattr(protocol, name)
    if name == "Smoother":
        from ..inference.smoothing import Smoother
        return Smoother
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
