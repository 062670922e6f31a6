"""What the web app needs besides the engine: request-size limits enforced before any parsing,
each sized from what its endpoint accepts, and the key that identifies a visitor for the
per-visitor limits."""
import ipaddress
import json
import os
from dataclasses import dataclass

# Worst-case JSON of one char: a char outside the Basic Multilingual Plane (an emoji) is one char
# in Python but two \uXXXX escapes (12 bytes) in the ASCII-only JSON clients send by default.
JSON_BYTES_PER_CHAR = 12
FORM_BYTES = 16 * 1024  # the rest of a request: its other inputs, the session hash, event data


def json_bytes(chars: int) -> int:
    """The largest request body a text of `chars` chars can make: every char escaped, and the form."""
    return chars * JSON_BYTES_PER_CHAR + FORM_BYTES


@dataclass(frozen=True)
class Limit:
    max_bytes: int
    what: str  # what the endpoint accepts, for the refusal: "a text to read has up to 20,000 characters"

    @property
    def message(self) -> str:
        return f"The request is too large (over {self.max_bytes // 1024:,} KB): {self.what}."


DEFAULT_LIMIT = Limit(64 * 1024,
                      "the model reads only the last 2,000 characters of a seed: send a shorter one")


class BodyLimit:
    """ASGI middleware: a request body over its path's limit gets 413 and a sentence naming what
    was too long, before the app reads or parses any of it. `limits` maps a path suffix (e.g.
    "/call/score", matched with or without a trailing slash) to its Limit; other paths get
    `default`. Checks the declared Content-Length first, then counts the bytes as they arrive
    (a chunked upload declares none)."""

    def __init__(self, app, limits: dict[str, Limit] | None = None, default: Limit = DEFAULT_LIMIT):
        self.app, self.limits, self.default = app, limits or {}, default

    def limit_for(self, path: str) -> Limit:
        path = path.rstrip("/")
        return next((limit for suffix, limit in self.limits.items() if path.endswith(suffix)), self.default)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope.get("path", ""))
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit.max_bytes:
            return await self._refuse(send, limit)
        state = {"read": 0, "over": False, "started": False}

        async def counted_receive():
            message = await receive()
            state["read"] += len(message.get("body", b""))
            if state["read"] > limit.max_bytes:
                state["over"] = True
                return {"type": "http.disconnect"}  # the app stops reading here
            return message

        async def guarded_send(message):
            if state["over"]:  # whatever the app answers to a cut-off body, the client gets the reason
                if not state["started"]:
                    state["started"] = True
                    await self._refuse(send, limit)
                return
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not state["over"]:  # only the cut-off body is ours to answer for
                raise
        if state["over"] and not state["started"]:
            await self._refuse(send, limit)

    @staticmethod
    async def _refuse(send, limit: Limit) -> None:
        body = json.dumps({"error": limit.message, "detail": limit.message}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _is_public(entry: str) -> bool:
    try:
        return ipaddress.ip_address(entry).is_global
    except ValueError:  # not an address (a visitor may write anything): never the proxy's
        return False


def forwarded_client(x_forwarded_for: str) -> str | None:
    """The visitor's address in an X-Forwarded-For value when every proxy is trusted ('*'): the
    rightmost public address. Each proxy appends the address it saw to the right, so the entries
    left of the edge proxy's are the visitor's own writing; entries right of it are the provider's
    internal hops (private addresses). The rightmost entry if none is public; None if empty."""
    entries = [e.strip() for e in x_forwarded_for.split(",") if e.strip()]
    return next((e for e in reversed(entries) if _is_public(e)), entries[-1] if entries else None)


def client_key(request) -> str:
    """Who is asking, for the per-visitor limits: the visitor's IP address.

    Uvicorn replaces a trusted proxy's address (the addresses in $FORWARDED_ALLOW_IPS, 127.0.0.1
    by default) by the rightmost X-Forwarded-For entry that is not a trusted proxy's, which is
    right. But with FORWARDED_ALLOW_IPS='*' it takes the leftmost entry, which the visitor writes
    and can change at every request; then the key is forwarded_client(): the rightmost public
    address, the one the edge proxy appended."""
    headers = getattr(request, "headers", None) or {}
    if os.environ.get("FORWARDED_ALLOW_IPS") == "*":
        forwarded = ",".join(headers.getlist("x-forwarded-for")) if hasattr(headers, "getlist") \
            else headers.get("x-forwarded-for", "")
        client = forwarded_client(forwarded)
        if client:
            return client
    host = getattr(getattr(request, "client", None), "host", None)
    return host or getattr(request, "session_hash", None) or "unknown"
