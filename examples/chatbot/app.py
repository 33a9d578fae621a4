"""A small FastAPI "chatbot" to run behind gatehouse, and the backend its tests use.

It trusts the identity header ``X-Auth-User`` that gatehouse sets (``anonymous``
when absent) and never checks credentials itself. Besides the chat endpoints it
reports exactly what reached it (``/echo``) and records every request it saw
(``GET``/``DELETE /__requests``), so tests can assert the backend never saw a
request that gatehouse should have refused. ``examples/backend_app.rs`` is the
same API in Rust.

Run it with ``uvicorn app:app --port 8000`` from this folder.
"""

import asyncio
import hashlib
import json
import os
import sys
import threading

from fastapi import FastAPI, Header, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

IDENTITY_HEADER = "x-auth-user"
ANONYMOUS = "anonymous"

# Every request that reached the app, oldest first (``/__requests`` itself excluded).
RECORDED: list[dict] = []


def latin1(raw: bytes) -> str:
    return raw.decode("latin-1")


def describe(scope) -> dict:
    """Method, raw path, raw query and all headers (in order) of an HTTP or WebSocket request."""
    return {
        "method": scope.get("method", "GET"),  # a WebSocket handshake is a GET
        "path": latin1(scope.get("raw_path") or scope["path"].encode()),
        "query": latin1(scope.get("query_string", b"")),
        "headers": [[latin1(name), latin1(value)] for name, value in scope["headers"]],
    }


class RecordRequests:
    """Pure ASGI middleware: records each request and passes it on untouched,
    so streaming responses and WebSockets are never buffered."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket") and scope["path"] != "/__requests":
            RECORDED.append(describe(scope))
        await self.app(scope, receive, send)


app = FastAPI(title="gatehouse example chatbot")
app.add_middleware(RecordRequests)


class ChatIn(BaseModel):
    message: str


@app.get("/health")
async def health():
    return {"status": "ok"}


@app.post("/chat")
async def chat(body: ChatIn, x_auth_user: str = Header(ANONYMOUS)):
    return {"user": x_auth_user, "reply": f"echo: {body.message}"}


@app.get("/chat/stream")
async def chat_stream(n: int = 5, interval_ms: int = 200, x_auth_user: str = Header(ANONYMOUS)):
    async def events():
        for i in range(n):
            if i > 0:
                await asyncio.sleep(interval_ms / 1000)
            data = json.dumps({"i": i, "user": x_auth_user}, separators=(",", ":"))
            yield f"data: {data}\n\n"

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


@app.websocket("/ws")
async def ws(websocket: WebSocket):
    await websocket.accept()
    await websocket.send_text(f"hello {websocket.headers.get(IDENTITY_HEADER, ANONYMOUS)}")
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass


async def echo(scope, receive, send):
    """Any method: what arrived, and how many body bytes."""
    body_len = 0
    async for chunk in Request(scope, receive).stream():
        body_len += len(chunk)
    await JSONResponse({**describe(scope), "body_len": body_len})(scope, receive, send)


class AnyMethod:
    """Wraps an ASGI function so Starlette routes every method to it (it
    defaults plain functions to GET)."""

    def __init__(self, asgi):
        self.asgi = asgi

    async def __call__(self, scope, receive, send):
        await self.asgi(scope, receive, send)


app.add_route("/echo", AnyMethod(echo))
app.add_route("/echo/{path:path}", AnyMethod(echo))


@app.post("/upload")
async def upload(request: Request):
    size, digest = 0, hashlib.sha256()
    async for chunk in request.stream():
        size += len(chunk)
        digest.update(chunk)
    return {"bytes": size, "sha256": digest.hexdigest()}


@app.get("/slow")
async def slow(seconds: float = 3):
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@app.get("/__requests")
async def list_requests():
    return RECORDED


@app.delete("/__requests", status_code=204)
async def clear_requests():
    RECORDED.clear()
    return Response(status_code=204)


def _exit_when_stdin_closes():
    sys.stdin.buffer.read()
    os._exit(0)


# Test harnesses set this and keep our stdin open: if the harness dies without
# killing us, the pipe closes and we exit instead of lingering on the port.
if os.environ.get("CHATBOT_EXIT_ON_STDIN_EOF") == "1":
    threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
