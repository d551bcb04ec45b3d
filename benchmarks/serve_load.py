"""Load test of `medinpaint serve`: start it on loopback, send N DM-i-AI requests at concurrency C, report latency.

    python benchmarks/serve_load.py --requests 64 --concurrency 4            # the shipped weights
    python benchmarks/serve_load.py --stand-in --max-batch 1                 # untrained, shipped architecture
    python benchmarks/serve_load.py --workers 2 --backend int8               # two 1-thread workers, int8 network

The requests are the bundled sample cases in the official wire format, cycled. Latency is measured by the client
(httpx) from send to full answer; the mean micro-batch size comes from the server's JSON request log.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from medinpaint.data import read_slices
from medinpaint.samples import sample_dir
from medinpaint.serve.server import serve_in_subprocess

SHIPPED_ARCHITECTURE = {"base_channels": 16, "depth": 4, "blocks_per_level": 1}


def stand_in_weights(folder: Path) -> Path:
    """An untrained checkpoint of the shipped architecture: same cost per request, for when the weights are not out yet."""
    from medinpaint.inference import save_inpainter
    from medinpaint.models import MaskAwareUNet, UNetConfig

    cfg = UNetConfig(**SHIPPED_ARCHITECTURE)
    return save_inpainter(folder / "stand-in.safetensors", MaskAwareUNet(cfg), name="stand-in")


def sample_requests() -> list[dict]:
    """The bundled cases as DM-i-AI requests: base64 of the PNG files, vertebra as an int."""
    folder = sample_dir()
    encode = lambda kind, case: base64.b64encode((folder / kind / f"{kind}_{case}.png").read_bytes()).decode()  # noqa: E731
    return [{"corrupted_image": encode("corrupted", c), "tissue_image": encode("tissue", c), "mask_image": encode("mask", c),
             "vertebrae": int((folder / "vertebrae" / f"vertebrae_{c}.txt").read_text())} for c in read_slices(folder).ids]


async def load(url: str, requests: list[dict], n: int, concurrency: int, time_limit: float) -> tuple[list[float], int, float]:
    """(latencies in s of the answered requests, errors, wall time). Stops sending after `time_limit` seconds:
    requests never sent are not errors, and show as `requests` below N."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    start = time.perf_counter()

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal sent, errors
        while sent < n and time.perf_counter() - start < time_limit:
            body = requests[sent % len(requests)]
            sent += 1
            t0 = time.perf_counter()
            try:
                answer = await client.post("/predict", json=body)
                ok = answer.status_code == 200 and "reconstructed_image" in answer.json()
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        for body in requests[:2]:  # warm-up, not counted
            (await client.post("/predict", json=body)).raise_for_status()
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - start


def mean_batch(log: Path) -> float:
    sizes = [line["batch"] for line in map(json.loads, filter(lambda x: x.startswith("{"), log.read_text().splitlines()))
             if line.get("path") == "/predict" and "batch" in line]
    sizes = sizes[2:]  # the warm-up requests
    return float(np.mean(sizes)) if sizes else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, help="checkpoint to serve (default: the shipped one)")
    parser.add_argument("--stand-in", action="store_true", help="serve an untrained checkpoint of the shipped architecture")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-batch", type=int, help="server micro-batch limit (default: the server's; 1: no batching)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--backend", default="auto", help="the server's --backend: auto, torch, onnx or int8")
    parser.add_argument("--time-limit", type=float, default=120, help="stop sending after this many seconds")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        weights = stand_in_weights(Path(tmp)) if args.stand_in else args.weights
        log = Path(tmp) / "server.log"
        serve_args = ["--workers", str(args.workers), "--backend", args.backend, *(["--max-batch", str(args.max_batch)] if args.max_batch else [])]
        with serve_in_subprocess(*serve_args, *(["--weights", str(weights)] if weights else []), log=log) as url:
            health = httpx.get(f"{url}/health").json()
            latencies, errors, wall = asyncio.run(load(url, sample_requests(), args.requests, args.concurrency, args.time_limit))
            alive = httpx.get(f"{url}/health", timeout=5).status_code == 200
        lat = np.array(latencies) * 1000
        result = {
            "model": health["model"], "checksum": health["checksum"][:12],
            "requests": len(latencies) + errors, "concurrency": args.concurrency, "max_batch": health["max_batch"],
            "workers": args.workers, "backend": health["backend"], "errors": errors, "p50_ms": round(float(np.percentile(lat, 50)), 1),
            "p95_ms": round(float(np.percentile(lat, 95)), 1), "max_ms": round(float(lat.max()), 1),
            "throughput_rps": round(len(latencies) / wall, 2), "mean_batch": round(mean_batch(log), 2),
            "server_alive_after": alive,
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
