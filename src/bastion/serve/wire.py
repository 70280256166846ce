"""What every gateway request carries through its steps: its id, its key token, its body, its audit trace,
and the refusal that ends it early (an HTTP status and a one-line message naming the fix)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["REQUEST_ID_HEADER", "Refusal", "RequestIdMiddleware", "Trace", "error", "read_body", "token"]

REQUEST_ID_HEADER = "X-Request-ID"
BODY_TIMEOUT = 30.0  # seconds a client has to send a whole request body
_BEARER = re.compile(r"^\s*bearer\s+(\S+)\s*$", re.IGNORECASE)


class Refusal(Exception):
    """A request answered before the model: ``status``, the one-line ``message``, extra ``headers``."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, dict(headers or {})


@dataclass
class Trace:
    """What the audit record of one request will hold, filled in as the request goes."""

    request_id: str
    endpoint: str
    start: float
    key_id: str | None = None
    model: str | None = None
    rows: int = 0
    digest: str | None = None
    output: Any = None
    policy: str | None = None
    flags: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)


class RequestIdMiddleware:
    """Gives every request an id (``scope['state']['request_id']``) and echoes it in ``X-Request-ID``.
    The id is always the gateway's own: a client-chosen id could collide with another record's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=dict(headers or {}))


def token(request: Request) -> str | None:
    """The key sent as ``Authorization: Bearer TOKEN`` or ``X-API-Key: TOKEN`` ("" for a malformed
    Authorization header, None for none)."""
    auth = request.headers.get("authorization")
    if auth:
        match = _BEARER.match(auth)
        return match[1] if match else ""
    return request.headers.get("x-api-key")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) past ``limit`` bytes: by Content-Length first, then while streaming."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refusal(
            413, f"body: {declared} bytes exceed max_body_bytes {limit}; send fewer rows per request"
        )
    chunks, size = [], 0
    try:
        # a client dribbling its body (slowloris) holds a connection, not a thread: the deadline bounds
        # how long, and a client that hangs up mid-body is a refusal to record, not a server error
        async with asyncio.timeout(BODY_TIMEOUT):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Refusal(
                        413, f"body: more than max_body_bytes {limit} bytes; send fewer rows per request"
                    )
                chunks.append(chunk)
    except TimeoutError:
        raise Refusal(
            408, f"body: not received within {BODY_TIMEOUT:g} s; send the whole body at once"
        ) from None
    except ClientDisconnect:
        raise Refusal(499, "body: the client closed the connection before sending it") from None
    return b"".join(chunks)
