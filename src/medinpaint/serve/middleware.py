"""ASGI middleware: one JSON log line per request (with its latency), and a cap on request body sizes."""

from __future__ import annotations

import datetime
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOGGER_NAME = "medinpaint.serve"


class JsonLines(logging.Formatter):
    """A record as one JSON object: time, level, message and the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds")
        line = {"ts": ts, "level": record.levelname.lower(), "msg": record.getMessage()}
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line)


def server_logger() -> logging.Logger:
    """The serving logger, writing JSON lines to stderr unless someone configured it already."""
    logger = logging.getLogger(LOGGER_NAME)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonLines())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def error_response(status: int, detail: str, field: str | None) -> JSONResponse:
    """Every error the server gives has this one JSON shape."""
    return JSONResponse({"detail": detail, "field": field}, status_code=status)


class RequestLog:
    """Logs method, path, status, latency and what the route put in `request.state.log` (e.g. batch size). An
    unhandled error (our bug) is logged with its traceback and answered as a 500 in the one error shape, here
    rather than by Starlette's outermost handler, which re-raises after answering and so drops the connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.logger = server_logger()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status, started = 500, False

        async def record_status(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        except Exception as exc:
            if started:  # half an answer is out: nothing to do but end the connection
                raise
            self.logger.error("unhandled error on %s", scope["path"], exc_info=exc, extra={"fields": {"event": "error"}})
            await error_response(500, "internal server error", None)(scope, receive, record_status)
        finally:
            fields: dict[str, Any] = {
                "event": "request", "method": scope["method"], "path": scope["path"], "status": status,
                "latency_ms": round((time.perf_counter() - start) * 1000, 2),
            }
            fields.update(scope.get("state", {}).get("log", {}))
            self.logger.info("%s %s %d", scope["method"], scope["path"], status, extra={"fields": fields})


class BodyLimit:
    """Refuses bodies over `limit_for(path)` bytes with a 413, by Content-Length before reading when declared,
    else while reading (chunked uploads), so a huge body is never held in memory."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        too_big = f"request body over the {limit}-byte limit for {scope['path']}"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await error_response(413, too_big, "body")(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, too_big)  # FastAPI re-raises HTTPExceptions met while parsing the body
            return message

        await self.app(scope, counted, send)
