"""Running the app with uvicorn: in the foreground for `medinpaint serve`, or on a thread for tests and notebooks."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from medinpaint.devices import threads_per_process
from medinpaint.errors import InputError
from medinpaint.inference import Inpainter
from medinpaint.serve.app import create_app


def listen_on(host: str, port: int) -> socket.socket:
    """A socket listening on host:port, taken before the model loads and handed to uvicorn: a taken port fails in
    one line now, not in uvicorn's log after the load, and no other server can take it while the model loads."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a closed server's port is free
    try:
        sock.bind((host, port))
        sock.listen(2048)  # uvicorn's backlog
    except OSError as e:
        sock.close()
        hint = ": another server may hold it; pass --port" if e.errno == errno.EADDRINUSE else ": check --host"
        raise InputError(f"{host}:{port}: cannot listen there ({e.strerror}){hint}") from None
    return sock


def free_port() -> int:
    """A loopback port free at the time of asking (for tests and load tests that start a server on it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def browser_url(host: str, port: int) -> str:
    """The server's address as a browser on this machine opens it: a wildcard host means loopback."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}"


def run(host: str = "127.0.0.1", port: int = 9050, weights: Path | None = None, device: str = "cpu",
        workers: int = 1, flips: bool = False, max_batch: int | None = None, backend: str = "auto") -> None:
    """Serve until interrupted. One worker gets the app object (load errors surface here, as InputErrors);
    several are separate processes, each loading the model once and sharing the cores between their torch threads.
    The port is held from the start (`listen_on`)."""
    url = browser_url(host, port)
    common = {"access_log": False, "log_level": "info"}  # RequestLog is the access log
    with listen_on(host, port) as sock:
        if workers == 1:
            app = create_app(weights, device=device, flips=flips, max_batch=max_batch, backend=backend)
            print(f"page: {url}/ui/  API docs: {url}/docs", file=sys.stderr, flush=True)  # once the model is loaded
            uvicorn.Server(uvicorn.Config(app, **common)).run(sockets=[sock])
            return
        # Loaded once here, so that a bad checkpoint, device or backend is one line now, not a traceback per worker
        # restarted without end.
        Inpainter.from_pretrained(weights, device=device, flips=flips, backend=backend)
        print(f"page: {url}/ui/  API docs: {url}/docs", file=sys.stderr, flush=True)
        os.environ.update({
            "MEDINPAINT_WEIGHTS": str(weights or ""), "MEDINPAINT_DEVICE": device, "MEDINPAINT_FLIPS": "1" if flips else "0", "MEDINPAINT_BACKEND": backend,
            "MEDINPAINT_MAX_BATCH": str(max_batch or ""), "MEDINPAINT_TORCH_THREADS": str(threads_per_process(workers)),
        })
        uvicorn.run("medinpaint.serve.app:app_from_env", factory=True, workers=workers, fd=sock.fileno(), **common)


@contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", timeout: float = 30.0) -> Iterator[str]:
    """Run `app` on a free loopback port in a background thread; yields its base URL, stops it on exit."""
    sock = listen_on(host, 0)  # binding here, not in uvicorn, means no race for the port
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="medinpaint-server")
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


@contextmanager
def serve_in_subprocess(*args: str, log: Path, timeout: float = 120.0) -> Iterator[str]:
    """`medinpaint serve ARGS` in a child process on a free loopback port, output to `log`; yields the base URL once
    /health answers, and stops the server on exit. For load tests, where client and server must not share a GIL."""
    port = free_port()
    cmd = [sys.executable, "-m", "medinpaint", "serve", "--port", str(port), *args]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while not _answers(f"{url}/health"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start:\n{Path(log).read_text()}")
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            proc.wait(30)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - our own loopback URL
            return answer.status == 200
    except OSError:  # refused while starting; URLError and HTTPError are OSErrors too
        return False
