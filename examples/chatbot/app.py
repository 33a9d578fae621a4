"""A small FastAPI "chatbot" to run behind gatehouse, and the backend its tests use.

It trusts the identity header ``X-Auth-User`` that gatehouse sets (``anonymous``
when absent) and never checks credentials itself. Besides the chat endpoints it
reports exactly what reached it (``/echo``) and records every request it saw
(``GET``/``DELETE /__requests``), so tests can assert the backend never saw a
request that gatehouse should have refused. ``examples/backend_app.rs`` is the
same API in Rust (without the browser UI).

Under ``/ui/`` it serves a small browser UI (``static/``: one HTML page, one
script, one stylesheet, an icon; no framework, nothing from a CDN) meant to sit behind
gatehouse's browser sessions: it shows who ``/auth/me`` says is signed in,
posts each message as JSON to ``/ui/api/messages`` and streams the reply from
``/ui/api/messages/{id}/reply`` over Server-Sent Events, token by token.

Run it with ``uvicorn app:app --port 8000`` from this folder.
"""

import asyncio
import hashlib
import json
import os
import re
import secrets
import sys
import threading
import time
from pathlib import Path

import jwt
from fastapi import (
    Depends,
    FastAPI,
    Header,
    HTTPException,
    Request,
    Response,
    WebSocket,
    WebSocketDisconnect,
)
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

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


# ---------------------------------------------------------------- browser UI

STATIC = Path(__file__).resolve().parent / "static"

# The page loads only its own script and stylesheet and talks only to its own
# origin (gatehouse's /auth/me and /auth/logout included).
UI_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}

# Messages posted and not yet replied to: id -> (user, message), oldest first.
PENDING: dict[str, tuple[str, str]] = {}
MAX_PENDING = 1000
# The pause between two tokens of a streamed reply.
TOKEN_INTERVAL_S = 0.04


class UiMessageIn(BaseModel):
    message: str = Field(min_length=1, max_length=2000)


@app.get("/ui/")
async def ui_page():
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=UI_HEADERS)


@app.get("/ui/chat.js")
async def ui_script():
    return FileResponse(STATIC / "chat.js", media_type="text/javascript", headers=UI_HEADERS)


@app.get("/ui/chat.css")
async def ui_style():
    return FileResponse(STATIC / "chat.css", media_type="text/css", headers=UI_HEADERS)


@app.get("/ui/icon.svg")
async def ui_icon():
    return FileResponse(STATIC / "icon.svg", media_type="image/svg+xml", headers=UI_HEADERS)


@app.post("/ui/api/messages", status_code=201)
async def ui_post_message(body: UiMessageIn, x_auth_user: str = Header(ANONYMOUS)):
    """Keeps the message for its reply stream; the id to open it with."""
    while len(PENDING) >= MAX_PENDING:
        PENDING.pop(next(iter(PENDING)))
    message_id = secrets.token_urlsafe(16)
    PENDING[message_id] = (x_auth_user, body.message)
    return {"id": message_id, "user": x_auth_user}


def reply_tokens(user: str, message: str) -> list[str]:
    """The bot's reply to ``message`` from ``user``, as the tokens it streams."""
    text = (
        f"Hello {user}! You said: \"{message}\". I am the example chatbot "
        "behind gatehouse, and this reply reaches you one word at a time."
    )
    return re.findall(r"\S+\s*", text)


@app.get("/ui/api/messages/{message_id}/reply")
async def ui_reply(message_id: str, x_auth_user: str = Header(ANONYMOUS)):
    """The reply to a message the same user posted, as Server-Sent Events: one
    ``token`` event ``{"t": "<word> "}`` per word, then ``done``. Each message
    is answered once (an ``EventSource`` that reconnects gets 404 and stops)."""
    pending = PENDING.get(message_id)
    if pending is None or pending[0] != x_auth_user:
        return JSONResponse({"error": "not_found"}, status_code=404)
    del PENDING[message_id]
    user, message = pending

    async def events():
        for i, token in enumerate(reply_tokens(user, message)):
            if i > 0:
                await asyncio.sleep(TOKEN_INTERVAL_S)
            yield f"event: token\ndata: {json.dumps({'t': token}, separators=(',', ':'))}\n\n"
        yield "event: done\ndata: {}\n\n"

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


# ------------------------------------------- the signed identity assertion

# gatehouse signs who the user is (SPEC §12); a backend that verifies it no
# longer trusts whoever can reach its port. Where gatehouse publishes its
# keys, which audience this backend is (the upstream's `audience`, default
# its name in gatehouse's config) and gatehouse's issuer:
JWKS_URL = os.environ.get(
    "GATEHOUSE_JWKS_URL", "https://localhost:8443/.well-known/gatehouse/jwks.json"
)
AUDIENCE = os.environ.get("GATEHOUSE_AUDIENCE", "chatbot")
ISSUER = os.environ.get("GATEHOUSE_ISSUER", "https://localhost")
# Fetched on first use, cached, and fetched again for a key id it has not
# seen (a rotation).
_gatehouse_keys = jwt.PyJWKClient(JWKS_URL, cache_keys=True, lifespan=300)


def gatehouse_identity(x_gatehouse_assertion: str = Header()) -> dict:
    """FastAPI dependency: the claims of a valid assertion, else 401."""
    try:
        key = _gatehouse_keys.get_signing_key_from_jwt(x_gatehouse_assertion)
        return jwt.decode(
            x_gatehouse_assertion,
            key,
            algorithms=["ES256", "EdDSA", "RS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["iss", "aud", "sub", "iat", "exp", "jti"]},
        )
    except jwt.PyJWTError as e:
        raise HTTPException(status_code=401, detail=f"invalid identity assertion: {e}")


@app.get("/verified/whoami")
def verified_whoami(claims: dict = Depends(gatehouse_identity)):
    return {"sub": claims["sub"], "roles": claims["roles"], "method": claims["method"]}


# ------------------------------------------- an OpenAI-compatible completion

# What a chat completion reports it used, in the header gatehouse's
# token quotas read (SPEC §11 `usage_header`); gatehouse removes it before
# the client. The body carries OpenAI's own `usage` as well.
USAGE_HEADER = "X-Gatehouse-Usage"


class CompletionMessage(BaseModel):
    role: str
    content: str = Field(max_length=20_000)


class StreamOptions(BaseModel):
    include_usage: bool = False


class CompletionIn(BaseModel):
    model: str = "gatehouse-echo-1"
    messages: list[CompletionMessage] = Field(min_length=1, max_length=100)
    stream: bool = False
    stream_options: StreamOptions | None = None


def count_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: one token per word."""
    return len(text.split())


@app.post("/v1/chat/completions")
async def chat_completions(body: CompletionIn, x_auth_user: str = Header(ANONYMOUS)):
    """OpenAI's `POST /v1/chat/completions`, answered by echoing the last user
    message one word at a time, with a `usage` that is a pure function of the
    request: prompt tokens = words of every message, completion tokens =
    words of the reply. `"stream": true` answers Server-Sent Events in
    OpenAI's chunk format (usage in a final chunk only when
    `stream_options.include_usage` is set, as OpenAI does)."""
    last = next((m.content for m in reversed(body.messages) if m.role == "user"), "")
    tokens = reply_tokens(x_auth_user, last)
    prompt = sum(count_tokens(m.content) for m in body.messages)
    completion = sum(count_tokens(t) for t in tokens)
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    ident = f"chatcmpl-{secrets.token_hex(12)}"
    head = {"id": ident, "created": int(time.time()), "model": body.model}
    headers = {USAGE_HEADER: str(usage["total_tokens"])}
    if not body.stream:
        return JSONResponse(
            {
                **head,
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "".join(tokens)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            },
            headers=headers,
        )

    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def chunk(choices: list, usage_value=None) -> str:
        data = {**head, "object": "chat.completion.chunk", "choices": choices}
        if include_usage:
            data["usage"] = usage_value
        return f"data: {json.dumps(data, separators=(',', ':'))}\n\n"

    async def events():
        yield chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for token in tokens:
            await asyncio.sleep(TOKEN_INTERVAL_S)
            yield chunk([{"index": 0, "delta": {"content": token}, "finish_reason": None}])
        yield chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if include_usage:
            yield chunk([], usage)
        yield "data: [DONE]\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", **headers},
    )


# ---------------------------------------------------------------- test support

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
