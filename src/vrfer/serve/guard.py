"""Who may talk to `vrfer serve`: the token (Bearer header or ?token=), browser origins, and the Host header of a
server bound to loopback without a token (no DNS rebinding). HTTP routes call `guard`; WebSockets the checks."""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse

from .protocol import error_body
from .state import LOCAL_HOSTS, ServerState, is_local_host


def presented_token(headers, query) -> str | None:
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return query.get("token")


def authorized(state: ServerState, headers, query) -> bool:
    token = state.config.token
    if not token:
        return True
    given = presented_token(headers, query)
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def origin_ok(state: ServerState, headers) -> bool:
    """Browsers send Origin; a page from another site must not read this machine's camera events.
    Non-browser clients (no Origin), the server's own pages and --allow-origin entries pass."""
    origin = headers.get("origin")
    if not origin or state.config.token:          # with a token, the token is the check
        return True
    allowed = state.config.allow_origins
    if "*" in allowed or origin in allowed:
        return True
    return urlsplit(origin).netloc.lower() == headers.get("host", "").lower()


def host_ok(state: ServerState, headers) -> bool:
    """Bound to loopback without a token: only loopback Host headers (no DNS rebinding)."""
    if state.config.token or not is_local_host(state.config.host):
        return True
    host = headers.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name.lower() in LOCAL_HOSTS or is_local_host(name)


def deny(state: ServerState, status: int, message: str) -> JSONResponse:
    state.counters["auth_failures"] += 1
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body("unauthorized" if status == 401 else "forbidden", message), status_code=status,
                        headers=headers)


def guard(request: Request) -> JSONResponse | None:
    state: ServerState = request.app.state.vrfer
    if not host_ok(state, request.headers):
        return deny(state, 403, "Host header is not a loopback name")
    if not authorized(state, request.headers, request.query_params):
        return deny(state, 401, "token required: ?token=... or Authorization: Bearer ...")
    return None
