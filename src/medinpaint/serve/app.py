"""The FastAPI app: DM-i-AI's `/predict` wire format, a batch endpoint, health, and the page at `/ui/`.

The model is loaded once, when the app is made; requests are decoded in the threadpool and filled by the
micro-batcher on its own inference thread, so the event loop only moves bytes.
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from medinpaint.inference import Inpainter
from medinpaint.samples import sample_dir
from medinpaint.serve.batcher import Job, MicroBatcher
from medinpaint.serve.decode import FieldError, decode_image, decode_mask, decode_tissue, encode_image
from medinpaint.serve.middleware import BodyLimit, RequestLog, error_response
from medinpaint.serve.schemas import (
    MAX_BATCH_ITEMS,
    BatchRequest,
    BatchResponse,
    ErrorBody,
    SampleCase,
    Health,
    InpaintRequest,
    PredictRequest,
    PredictResponse,
)

SERVICE = "ct-inpainting-usecase"  # what DM-i-AI's template answers at GET /api
RUNNING = "Your endpoint is running!"
DEFAULT_GPU_BATCH = 8
MAX_BODY_BYTES = 1 << 20  # one case is three 256x256 PNGs in base64: at most about 270 kB
ERRORS: dict[int | str, dict[str, Any]] = {413: {"model": ErrorBody}, 422: {"model": ErrorBody}}


def create_app(
    model: Inpainter | str | Path | None = None,
    device: str = "cpu",
    flips: bool = False,
    max_batch: int | None = None,
    max_wait_ms: float = 10.0,
    max_body_bytes: int = MAX_BODY_BYTES,
    backend: str = "auto",
) -> FastAPI:
    """An app serving `model`: an Inpainter, a checkpoint path, or None for the shipped weights.
    `max_batch` None: micro-batch on a GPU only (on 2 CPU cores it did not raise throughput, see BENCHMARKS.md);
    1 turns it off. A batch request may be `MAX_BATCH_ITEMS` times `max_body_bytes`."""
    inpainter = model if isinstance(model, Inpainter) else Inpainter.from_pretrained(model, device=device, flips=flips, backend=backend)
    if max_batch is None:
        max_batch = DEFAULT_GPU_BATCH if inpainter.device.type == "cuda" else 1
    batcher = MicroBatcher(inpainter, max_batch=max_batch, max_wait_ms=max_wait_ms)
    started = time.time()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()

    # strict_content_type off: a JSON body without a Content-Type header is read as JSON, as the FastAPI of DM-i-AI's
    # template did (FastAPI >= 0.132 refuses it by default). The CSRF it guards against needs an endpoint that acts
    # on someone's behalf; these only compute an answer.
    app = FastAPIOffline(title="medinpaint", summary="Fill the missing pixels of CT slices (DM-i-AI 2024 CT inpainting API).",
                         lifespan=lifespan, strict_content_type=False)
    app.state.inpainter, app.state.batcher = inpainter, batcher
    _add_error_handlers(app)
    app.add_middleware(BodyLimit, limit_for=lambda path: max_body_bytes * (MAX_BATCH_ITEMS if path.rstrip("/").endswith("/batch") else 1))
    app.add_middleware(RequestLog)

    @app.get("/", response_model=str, summary="Says the endpoint runs; a browser gets a link to the page")
    async def index(request: Request) -> Any:
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(f'<!doctype html><title>medinpaint</title><p>{RUNNING}</p><p><a href="ui/">Open the inpainting page</a></p>')
        return RUNNING

    @app.get("/api", summary="Service name and uptime, as in the DM-i-AI template")
    async def api() -> dict[str, str]:
        return {"service": SERVICE, "uptime": str(datetime.timedelta(seconds=time.time() - started))}

    @app.get("/health", response_model=Health, summary="The model being served, identified by its checksum")
    async def health() -> Health:
        return Health(status="ok", model=inpainter.name, checksum=inpainter.checksum, device=str(inpainter.device),
                      backend=inpainter.backend, max_batch=batcher.max_batch)

    @app.post("/predict", response_model=PredictResponse, responses=ERRORS, summary="Fill one DM-i-AI case")
    async def predict(body: PredictRequest, request: Request) -> PredictResponse:
        (image,) = await _fill(request, [body])
        return PredictResponse(reconstructed_image=image)

    @app.post("/predict/batch", response_model=BatchResponse, responses=ERRORS, summary="Fill many DM-i-AI cases")
    async def predict_batch(body: BatchRequest, request: Request) -> BatchResponse:
        return BatchResponse(reconstructed_images=await _fill(request, body.items, prefix="items"))

    @app.post("/inpaint", response_model=PredictResponse, responses=ERRORS,
              summary="Fill one slice; tissue map and vertebra optional (used by the page)")
    async def inpaint(body: InpaintRequest, request: Request) -> PredictResponse:
        (image,) = await _fill(request, [body])
        return PredictResponse(reconstructed_image=image)

    async def _fill(request: Request, items: list[PredictRequest] | list[InpaintRequest], prefix: str = "") -> list[str]:
        jobs = await run_in_threadpool(lambda: [_job(item, f"{prefix}.{i}." if prefix else "") for i, item in enumerate(items)])
        filled = await batcher.fill(jobs)
        request.state.log = {"slices": len(jobs), "batch": max(job.batch for job in jobs)}
        return await run_in_threadpool(lambda: [encode_image(image) for image in filled])

    @app.get("/samples", response_model=list[SampleCase], summary="The bundled sample cases the page offers")
    async def samples() -> list[SampleCase]:
        return sample_cases()

    app.mount("/sample-files", StaticFiles(directory=str(sample_dir())), name="sample-files")
    app.mount("/ui", StaticFiles(directory=str(resources.files("medinpaint") / "serve" / "static"), html=True), name="ui")
    return app


def sample_cases() -> list[SampleCase]:
    """The bundled cases (validation patients, never trained on), by id, with their vertebra levels."""
    folder = sample_dir()
    cases = []
    for ct in sorted((folder / "ct").glob("ct_*.png")):
        case = ct.stem[len("ct_"):]
        level = folder / "vertebrae" / f"vertebrae_{case}.txt"
        cases.append(SampleCase(id=case, vertebrae=int(level.read_text()) if level.is_file() else None))
    return cases


def _job(item: PredictRequest | InpaintRequest, prefix: str) -> Job:
    """Decode and check one case's images; errors name the field (`items.3.mask_image` in a batch)."""
    return Job(
        image=decode_image(item.corrupted_image, prefix + "corrupted_image"),
        mask=decode_mask(item.mask_image, prefix + "mask_image"),
        tissue=None if item.tissue_image is None else decode_tissue(item.tissue_image, prefix + "tissue_image"),
        vertebrae=item.vertebrae,
    )


def _add_error_handlers(app: FastAPI) -> None:
    """Every error as `{"detail", "field"}`: 422 for bad fields and for a body that is not JSON (as FastAPI and
    DM-i-AI's template answer), 400 for what Starlette cannot parse, 413 for big bodies, 404 and 405 (with its
    Allow header); a 500 for our bugs is `RequestLog`'s."""

    @app.exception_handler(FieldError)
    async def bad_field(request: Request, exc: FieldError) -> JSONResponse:
        return error_response(422, str(exc), exc.field)

    @app.exception_handler(RequestValidationError)
    async def bad_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
        loc = [str(part) for part in first["loc"]]
        not_json = first.get("type") == "json_invalid"
        if not_json or loc == ["body"]:  # no JSON object came: say what to send
            why = first.get("ctx", {}).get("error") if not_json else None
            return error_response(422, f"body: {first['msg']}" + (f" ({why})" if why else "")
                                  + ": send a JSON object of the fields, with Content-Type: application/json", "body")
        field = ".".join(loc[1:] if loc[0] == "body" else loc)
        return error_response(422, f"{field}: {first['msg']}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""), field)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:  # 400 (an unparsable body), 404, 405, 413
        if exc.status_code == 400:
            return error_response(400, f"body: {exc.detail}", "body")
        response = error_response(exc.status_code, str(exc.detail), "body" if exc.status_code == 413 else None)
        response.headers.update(exc.headers or {})  # a 405's Allow, as RFC 9110 asks
        return response


def app_from_env() -> FastAPI:
    """App factory for `uvicorn --factory` (used by `medinpaint serve --workers N`): settings from MEDINPAINT_* vars."""
    threads = os.environ.get("MEDINPAINT_TORCH_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    return create_app(os.environ.get("MEDINPAINT_WEIGHTS") or None, device=os.environ.get("MEDINPAINT_DEVICE", "cpu"),
                      flips=os.environ.get("MEDINPAINT_FLIPS") == "1", backend=os.environ.get("MEDINPAINT_BACKEND", "auto"),
                      max_batch=int(os.environ["MEDINPAINT_MAX_BATCH"]) if os.environ.get("MEDINPAINT_MAX_BATCH") else None)
