"""Connection timeouts uvicorn does not have: slow request headers and stalled request bodies.

uvicorn closes idle keep-alive connections (`timeout_keep_alive`), but a client that opens a
connection and sends its headers a byte at a time, or stops halfway through a body, holds the
connection for ever (18 such connections stayed open for 30 s in the issue's test). This protocol,
uvicorn's own h11 protocol plus a timer, closes a connection whose request headers are not complete
`HEADER_TIMEOUT_S` after it opened (or after its last response), and one whose body has sent nothing
for `BODY_TIMEOUT_S`. Used by `mien serve` (`uvicorn.run(..., http=TimedH11Protocol)`).
"""

from __future__ import annotations

import json
import time

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0
_CHECK_EVERY_S = 1.0


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with header and body timeouts (see module docs)."""

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._waiting_since = time.monotonic()  # for request headers, or body data
        self._watch = self.loop.call_later(_CHECK_EVERY_S, self._check)

    def send_400_response(self, msg: str) -> None:
        """A request the HTTP parser cannot read gets the one JSON error shape and the security headers, like
        every other error (uvicorn's own answer is plain text)."""
        from mien.server.browser import CSP, HEADERS

        body = json.dumps({"error": f"bad request: {msg}", "status": 400}).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close"),
                   (b"content-length", str(len(body)).encode()),
                   (b"content-security-policy", CSP.encode()),
                   *((k.lower().encode(), v.encode()) for k, v in HEADERS.items())]
        try:
            for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
                          h11.EndOfMessage()):
                self.transport.write(self.conn.send(event))
        except h11.LocalProtocolError:  # the parser is past sending a response: just close
            pass
        self.transport.close()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        # The WebSocket protocol takes the connection over, but h11 still thinks the request's body is
        # coming (uvicorn switches before h11 sees the end of the request): stop watching it, or the body
        # timeout would cut every WebSocket at BODY_TIMEOUT_S.
        if getattr(self, "_watch", None) is not None:
            self._watch.cancel()
            self._watch = None
        self._upgraded = True
        super().handle_websocket_upgrade(event)

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.SEND_BODY:
            self._waiting_since = time.monotonic()
        super().data_received(data)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._waiting_since = time.monotonic()

    def connection_lost(self, exc) -> None:
        if getattr(self, "_watch", None) is not None:
            self._watch.cancel()
        super().connection_lost(exc)

    def _check(self) -> None:
        if self.transport.is_closing() or getattr(self, "_upgraded", False):
            return
        state = self.conn.their_state
        if state in (h11.SWITCHED_PROTOCOL, h11.MIGHT_SWITCH_PROTOCOL):
            return  # became a WebSocket: its own protocol handles the connection from here
        waited = time.monotonic() - self._waiting_since
        if state is h11.IDLE and self.cycle is None and waited > HEADER_TIMEOUT_S and self.timeout_keep_alive_task is None:
            self.transport.close()  # headers too slow (an idle keep-alive connection has uvicorn's own timer)
            return
        if state is h11.SEND_BODY and waited > BODY_TIMEOUT_S:
            self.transport.close()  # body stalled
            return
        self._watch = self.loop.call_later(_CHECK_EVERY_S, self._check)
