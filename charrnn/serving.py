"""What the web app needs besides the engine: a request-size limit enforced before any parsing,
and the key that identifies a client for the engine's per-client limit."""
import json

MAX_BODY_BYTES = 64 * 1024  # a seed is trimmed to 2,000 chars anyway: 64 KB leaves room for any form


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` gets 413 and a sentence, before the app
    reads or parses any of it. Checks the declared Content-Length first, then counts the bytes
    as they stream in (a chunked upload declares none)."""

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES):
        self.app, self.max_bytes = app, max_bytes
        self.message = (f"The request is too large (over {max_bytes // 1024} KB). The model reads only the "
                        "last 2,000 characters of a seed: send a shorter one.")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send)
        state = {"read": 0, "over": False, "started": False}

        async def counted_receive():
            message = await receive()
            state["read"] += len(message.get("body", b""))
            if state["read"] > self.max_bytes:
                state["over"] = True
                return {"type": "http.disconnect"}  # the app stops reading here
            return message

        async def guarded_send(message):
            if state["over"]:  # whatever the app answers to a cut-off body, the client gets the reason
                if not state["started"]:
                    state["started"] = True
                    await self._refuse(send)
                return
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not state["over"]:  # only the cut-off body is ours to answer for
                raise
        if state["over"] and not state["started"]:
            await self._refuse(send)

    async def _refuse(self, send) -> None:
        body = json.dumps({"error": self.message, "detail": self.message}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def client_key(request) -> str:
    """Who is asking, for the per-client limit: the client's IP address as the web server sees it.
    Uvicorn already replaces a trusted proxy's address by the X-Forwarded-For client (trusted: the
    addresses in $FORWARDED_ALLOW_IPS, 127.0.0.1 by default; set it to the proxy's, or '*', on a host
    such as Hugging Face Spaces), so visitors behind one proxy are still told apart."""
    client = getattr(request, "client", None)
    host = getattr(client, "host", None)
    return host or getattr(request, "session_hash", None) or "unknown"
