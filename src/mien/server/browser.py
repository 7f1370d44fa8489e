"""Browser-side protections of `mien serve`: security headers, a Host allow-list, an Origin check.

- Every response says `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`,
  `X-Frame-Options: DENY`, and a strict `Content-Security-Policy` (own origin only; images may be
  data: URIs, which the results are; no inline scripts; `frame-ancestors 'none'`).
- DNS rebinding: a page on another site that points its own name at 127.0.0.1 reaches the server
  with `Host: evil.example`. Requests whose Host is not an allowed name are refused (400): the
  localhost names, the address the server listens on and `--allowed-host` names.
- Cross-site requests: a state-changing request (POST, PUT, PATCH, DELETE) that carries an `Origin`
  other than the server's own is refused (403), so a page the user visits cannot submit jobs or
  delete results. Clients that are not browsers send no Origin and are not affected.
- WebSockets are not HTTP requests to the middleware: the webcam socket checks Host and Origin itself
  (`websocket_refusal`) and closes before accepting, which the client sees as 403.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.responses import JSONResponse

from mien.server.settings import LOCAL_HOSTS

CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
# FastAPI's interactive docs load their script from a CDN (unavailable offline anyway): no CSP there.
_NO_CSP = ("/docs", "/redoc")
_UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def host_name(host: str) -> str:
    """The name part of a Host header value (`127.0.0.1:8000` -> `127.0.0.1`, `[::1]:80` -> `::1`)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def allowed_hosts(listen_host: str, extra: tuple[str, ...] = ()) -> set[str]:
    return {h.lower() for h in LOCAL_HOSTS | {listen_host} | set(extra)}


def check_request(method: str, headers, allowed: set[str]) -> JSONResponse | None:
    """The refusal for a request that fails the Host or Origin check, else None."""
    host = headers.get("host", "")
    if host and host_name(host) not in allowed:
        return JSONResponse({"error": "this server does not answer to that host name (use --allowed-host to add it)",
                             "status": 400}, 400)
    origin = headers.get("origin")
    if method in _UNSAFE_METHODS and origin and origin != "null":
        parts = urlsplit(origin)
        if parts.netloc.lower() != host.lower():
            return JSONResponse({"error": "cross-origin request refused", "status": 403}, 403)
    elif method in _UNSAFE_METHODS and origin == "null":
        return JSONResponse({"error": "cross-origin request refused", "status": 403}, 403)
    return None


def websocket_refusal(headers, allowed: set[str]) -> str | None:
    """Why a WebSocket handshake fails the Host or Origin check (refused with 403 before it is accepted), else
    None. Browsers always send an Origin with a WebSocket handshake, so a page on another site is caught here;
    clients that are not browsers send none."""
    host = headers.get("host", "")
    if host and host_name(host) not in allowed:
        return "this server does not answer to that host name (use --allowed-host to add it)"
    origin = headers.get("origin")
    if origin is not None and (origin == "null" or urlsplit(origin).netloc.lower() != host.lower()):
        return "cross-origin WebSocket refused"
    return None


def add_headers(path: str, headers) -> None:
    for key, value in HEADERS.items():
        headers.setdefault(key, value)
    if not path.startswith(_NO_CSP):
        headers.setdefault("Content-Security-Policy", CSP)
