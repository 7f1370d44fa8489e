"""The gate in front of the API, before any body is read: API key, rate limits, body size.

An ASGI middleware (not a FastAPI dependency, which runs only after the whole multipart body has
been spooled to disk):
- **API key** (when the server has one): a request without the right key is answered 401 at once.
  Wrong keys count against a strict per-address budget (`FAILED_KEYS_PER_MINUTE`), so guessing is
  answered 429 after a few tries, and so does the ordinary per-client rate limit (`--rate-limit`).
- **Body size while reading**: the request body is counted as it streams in (chunked or not, whatever
  `Content-Length` says); past the limit (`--max-upload-mb` per file, times the files a route takes)
  the client gets 413 and the rest is not read, so at most the limit plus one chunk reaches disk.
The page, static files and `/api/health` pass without a key.
"""

from __future__ import annotations

import json
import re

from mien.server.security import RateLimiter, key_matches, key_owner

FAILED_KEYS_PER_MINUTE = 20
_OPEN = ("/api/health",)
_FILENAME = re.compile(rb'filename="([^"\r\n]{1,200})"')


class _BodyTooLarge(Exception):
    pass


def request_key(headers: dict[str, str]) -> str | None:
    key = headers.get("x-api-key")
    auth = headers.get("authorization", "")
    if not key and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    return key


class Gate:
    """ASGI middleware: see the module docs. `settings` is the server's `ServerSettings`."""

    def __init__(self, app, settings, failures: RateLimiter | None = None) -> None:
        self.app, self.settings = app, settings
        self.limiter = RateLimiter(settings.rate_limit)
        self.failures = failures or RateLimiter(FAILED_KEYS_PER_MINUTE)  # shared with the WebSocket

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/") or scope["path"].startswith(_OPEN):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        address = (scope.get("client") or ("?", 0))[0]
        refusal = self._refusal(headers, address)
        if refusal is not None:
            await _reply(send, *refusal)
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        files = self.settings.max_files if scope["path"].startswith("/api/jobs") else 1
        limit = self.settings.max_body_bytes(files)
        await self._limited(scope, receive, send, limit)

    def _refusal(self, headers: dict[str, str], address: str) -> tuple[int, str, dict] | None:
        settings = self.settings
        key = request_key(headers)
        if settings.api_key and not key_matches(key, settings.api_key):
            wait = self.failures.allow(address)
            if wait is not None:
                return 429, "too many requests with a wrong API key; wait", {"Retry-After": str(int(wait) + 1)}
            return 401, "missing or wrong API key (send it as X-API-Key)", {}
        owner = key_owner(key) if settings.api_key else None
        wait = self.limiter.allow(owner or address)
        if wait is not None:
            return 429, f"rate limit of {settings.rate_limit} requests per minute reached", {"Retry-After": str(int(wait) + 1)}
        return None

    async def _limited(self, scope, receive, send, limit: int) -> None:
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _reply(send, 413, self._too_large())
            return
        seen = 0
        over = False  # the body passed the limit: the app's own reply (if any) is dropped for our 413
        parts = _PartSizes(dict(scope.get("headers", [])).get(b"content-type", b""), self.settings.max_upload_bytes)

        async def counting_receive():
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                seen += len(chunk)
                if seen > limit or parts.over(chunk):
                    over = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message):
            if not over:
                await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not over:
                raise
        if over:  # the body parser stopped (it may have turned our signal into its own 400: dropped)
            await _reply(send, 413, self._too_large(parts.name))

    def _too_large(self, name: str | None = None) -> str:
        message = f"request larger than the upload limit ({self.settings.max_upload_mb:.0f} MiB per file)"
        return f"{name}: {message}" if name else message


class _PartSizes:
    """Watches a multipart body as it streams for a part (a file) larger than the per-file limit, so one huge
    file is refused when it passes that limit, not when the whole request's limit is reached."""

    _SLACK = 64 * 1024  # a part's own headers

    def __init__(self, content_type: bytes, per_file: int) -> None:
        boundary = re.search(rb'boundary="?([^";]+)"?', content_type or b"")
        self.delimiter = b"\r\n--" + boundary.group(1) if boundary else None
        self.limit = per_file + self._SLACK
        self.size = 0  # bytes since the last delimiter
        self.tail = b""
        self.name: str | None = None  # the file name of the part being read, once its headers are seen

    def over(self, chunk: bytes) -> bool:
        if self.delimiter is None:
            return False
        data = self.tail + chunk
        last = data.rfind(self.delimiter)
        self.size = len(data) - last - len(self.delimiter) if last >= 0 else self.size + len(chunk)
        named = _FILENAME.findall(data[max(last, 0):][: self._SLACK])
        if named:
            self.name = named[-1].decode("utf-8", "replace")
        self.tail = data[-(len(self.delimiter) - 1):]
        return self.size > self.limit


async def _reply(send, status: int, message: str, headers: dict | None = None) -> None:
    body = json.dumps({"error": message, "status": status}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
