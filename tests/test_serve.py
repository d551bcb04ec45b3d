"""The server, run for real by uvicorn on a loopback port: wire format, equality with `medinpaint predict`, bad input."""

from __future__ import annotations

import asyncio
import base64
import errno
import io
import json
import logging
import re
import socket
import struct
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medinpaint.backends import resolve_backend
from medinpaint.checkpoint import file_checksum
from medinpaint.cli import app as cli
from medinpaint.data import read_slices
from medinpaint.data.png import PNG_MAGIC, encode_gray_png, read_gray_png
from medinpaint.inference import Inpainter
from medinpaint.samples import sample_dir
from medinpaint.serve import create_app
from medinpaint.serve.app import app_from_env
from medinpaint.serve.batcher import Job, MicroBatcher
from medinpaint.serve.middleware import LOGGER_NAME, JsonLines
from medinpaint.serve.server import browser_url, free_port, serve_in_subprocess, serve_in_thread

CASE = "450_0"


@pytest.fixture(scope="module")
def inpainter(tiny_checkpoint: Path) -> Inpainter:
    return Inpainter.from_pretrained(tiny_checkpoint)


@pytest.fixture(scope="module")
def client(tiny_checkpoint: Path) -> Iterator[httpx.Client]:
    """One real server for the module: every bad request below hits it, so it must survive them all."""
    with serve_in_thread(create_app(tiny_checkpoint, max_batch=8)) as url, httpx.Client(base_url=url, timeout=60) as c:
        yield c


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png(image: np.ndarray, mode: str | None = None) -> str:
    """base64 PNG of `image`; `mode` forces a PIL mode (RGB, I;16) to make the kinds of PNG the server refuses."""
    if mode is None:
        return b64(encode_gray_png(image))
    buf = io.BytesIO()
    Image.fromarray(image).convert(mode).save(buf, format="PNG")
    return b64(buf.getvalue())


def png_header(width: int, height: int) -> str:
    """base64 of a PNG that declares an 8-bit grayscale `width` x `height` image and holds no pixels: what a
    compressed image of that size looks like until its pixels are decompressed."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b64(PNG_MAGIC + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(b"IEND", b""))


def dmiai_request(folder: Path, case: str) -> dict:
    """A request built as DM-i-AI's example client builds it: cv2.imread(IMREAD_ANYCOLOR) -> cv2.imencode -> base64."""
    def encoded(kind: str) -> str:
        image = cv2.imread(str(folder / kind / f"{kind}_{case}.png"), cv2.IMREAD_ANYCOLOR)
        ok, data = cv2.imencode(".png", image)
        assert ok
        return b64(data.tobytes())

    return {"corrupted_image": encoded("corrupted"), "tissue_image": encoded("tissue"), "mask_image": encoded("mask"),
            "vertebrae": int((folder / "vertebrae" / f"vertebrae_{case}.txt").read_text())}


def decode_answer(text: str) -> np.ndarray:
    """The reconstruction decoded as DM-i-AI's evaluation service decodes it."""
    return cv2.imdecode(np.frombuffer(base64.b64decode(text), np.uint8), cv2.IMREAD_ANYCOLOR)


def test_index_api_and_health(client: httpx.Client, tiny_checkpoint: Path) -> None:
    assert client.get("/").json() == "Your endpoint is running!"
    page_link = client.get("/", headers={"accept": "text/html"})
    assert 'href="ui/"' in page_link.text and "Your endpoint is running!" in page_link.text
    api = client.get("/api").json()
    assert api["service"] == "ct-inpainting-usecase"
    seconds_up = lambda text: sum(float(x) * 60**k for k, x in enumerate(reversed(text.split(":"))))  # noqa: E731  H:MM:SS.s
    first = seconds_up(api["uptime"])
    assert re.fullmatch(r"\d+:\d\d:\d\d(\.\d+)?", api["uptime"]) and 0 <= first <= seconds_up(client.get("/api").json()["uptime"])
    wrong_method = client.get("/predict")
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"  # RFC 9110 asks for Allow
    assert wrong_method.json() == {"detail": "Method Not Allowed", "field": None}
    health = client.get("/health").json()
    assert health["model"] == "tiny" and health["checksum"] == file_checksum(tiny_checkpoint)
    assert health["status"] == "ok" and health["max_batch"] == 8


def test_docs_and_page_are_served(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/predict", "/predict/batch", "/inpaint", "/health", "/api"} <= set(paths)
    page = client.get("/ui/")
    assert page.status_code == 200 and '<canvas id="editor"' in page.text
    for asset in ("app.js", "png.js", "style.css"):
        assert client.get(f"/ui/{asset}").status_code == 200


@pytest.mark.parametrize("docs", ["/docs", "/redoc"])
def test_api_docs_need_no_cdn(client: httpx.Client, docs: str) -> None:
    html = client.get(docs).text
    assert "cdn." not in html and "https://" not in html  # offline, a CDN page would stay blank
    assets = re.findall(r'(?:src|href)="(/[^"]+\.(?:js|css))"', html)
    assert assets and all(client.get(a).status_code == 200 for a in assets)


def test_dmiai_request_round_trips_and_equals_inpainter(client: httpx.Client, inpainter: Inpainter, samples: Path) -> None:
    request = dmiai_request(samples, CASE)
    answer = client.post("/predict", json=request)
    assert answer.status_code == 200 and set(answer.json()) == {"reconstructed_image"}
    served = decode_answer(answer.json()["reconstructed_image"])
    assert served.shape == (256, 256) and served.dtype == np.uint8
    corrupted, mask = (read_gray_png(samples / k / f"{k}_{CASE}.png") for k in ("corrupted", "mask"))
    tissue = read_gray_png(samples / "tissue" / f"tissue_{CASE}.png")
    expected = inpainter.predict(corrupted, mask, tissue, request["vertebrae"])
    np.testing.assert_array_equal(served, expected)
    np.testing.assert_array_equal(served[mask == 0], corrupted[mask == 0])  # known pixels come back unchanged
    assert np.any(served[mask == 255] != 0)


def test_what_the_dmiai_template_reads_is_read_the_same(client: httpx.Client, samples: Path) -> None:
    """DM-i-AI's template (pydantic's lax int, b64decode without validation, FastAPI before 0.132) reads a level
    sent as 16.0 or "16", base64 in MIME lines or with a newline at the end, and a JSON body without a Content-Type
    header: each gives the answer of the plain request."""
    request = dmiai_request(samples, CASE)
    expected = client.post("/predict", json=request).json()
    level = request["vertebrae"]
    wrapped = {k: base64.encodebytes(base64.b64decode(v)).decode() if k.endswith("_image") else v for k, v in request.items()}
    variants = [{**request, "vertebrae": float(level)}, {**request, "vertebrae": str(level)}, wrapped,
                {**request, "mask_image": request["mask_image"] + "\n"}]
    assert all("\n" in wrapped[k] for k in ("corrupted_image", "tissue_image", "mask_image"))
    for body in variants:
        answer = client.post("/predict", json=body)
        assert answer.status_code == 200 and answer.json() == expected, answer.text
    bare = client.post("/predict", content=json.dumps(request).encode())  # no Content-Type header at all
    assert "content-type" not in bare.request.headers and bare.json() == expected


def test_a_batch_path_with_a_trailing_slash_gets_the_batch_limit(tiny_checkpoint: Path) -> None:
    app = create_app(tiny_checkpoint, max_body_bytes=1000)
    body = b'{"items": [' + b" " * 1500 + b"]}"  # over one item's limit, under a batch's
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        single = c.post("/predict", content=body, headers={"content-type": "application/json"})
        for path in ("/predict/batch", "/predict/batch/"):
            answer = c.post(path, content=body, headers={"content-type": "application/json"}, follow_redirects=True)
            assert answer.status_code == 422 and answer.json()["field"] == "items", (path, answer.text)
    assert single.status_code == 413


def test_served_images_equal_medinpaint_predict(client: httpx.Client, tiny_checkpoint: Path, samples: Path, tmp_path: Path) -> None:
    """All bundled cases, sent concurrently (so the micro-batcher groups them) and as one batch request."""
    result = CliRunner().invoke(cli, ["predict", "-i", str(samples), "-o", str(tmp_path / "pred"),
                                      "--weights", str(tiny_checkpoint), "--no-progress"])
    assert result.exit_code == 0, result.output
    cases = read_slices(samples).ids
    requests = [dmiai_request(samples, case) for case in cases]
    with ThreadPoolExecutor(len(requests)) as pool:
        single = list(pool.map(lambda r: client.post("/predict", json=r).json()["reconstructed_image"], requests))
    batch = client.post("/predict/batch", json={"items": requests}).json()["reconstructed_images"]
    for case, one, many in zip(cases, single, batch, strict=True):
        cli_image = read_gray_png(tmp_path / "pred" / f"{case}.png")
        np.testing.assert_array_equal(decode_answer(one), cli_image, err_msg=case)
        np.testing.assert_array_equal(decode_answer(many), cli_image, err_msg=case)


def test_inpaint_fills_without_side_information(client: httpx.Client, inpainter: Inpainter, samples: Path) -> None:
    corrupted, mask = (read_gray_png(samples / k / f"{k}_{CASE}.png") for k in ("corrupted", "mask"))
    answer = client.post("/inpaint", json={"corrupted_image": png(corrupted), "mask_image": png(mask)})
    assert answer.status_code == 200
    np.testing.assert_array_equal(decode_answer(answer.json()["reconstructed_image"]), inpainter.predict(corrupted, mask))


def test_micro_batcher_shares_a_pass_between_compatible_jobs(inpainter: Inpainter, samples: Path) -> None:
    s = read_slices(samples, require_masks=True)
    jobs = [Job(s.images[i], s.masks[i], s.tissue[i], int(s.vertebrae[i])) for i in range(5)]
    jobs += [Job(s.images[i], s.masks[i]) for i in range(5, 8)]  # no side information: a group of their own

    async def fill() -> list[np.ndarray]:
        batcher = MicroBatcher(inpainter, max_batch=16, max_wait_ms=50)
        await batcher.start()
        try:
            return await batcher.fill(jobs)
        finally:
            await batcher.stop()

    filled = asyncio.run(fill())
    assert [job.batch for job in jobs] == [5] * 5 + [3] * 3
    for job, out in zip(jobs, filled):
        np.testing.assert_array_equal(out, inpainter.predict(job.image, job.mask, job.tissue, job.vertebrae))


def test_each_request_logs_one_json_line_with_latency(client: httpx.Client, samples: Path) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    try:
        assert client.post("/predict", json=dmiai_request(samples, CASE)).status_code == 200
        assert client.get("/api").status_code == 200
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(JsonLines().format(r)) for r in records]
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [("POST", "/predict", 200), ("GET", "/api", 200)]
    assert lines[0]["latency_ms"] > 0 and lines[0]["batch"] == 1 and lines[0]["slices"] == 1
    assert lines[0]["ts"].endswith("+00:00")


def png_with_chunk(image: np.ndarray, kind: bytes, data: bytes) -> str:
    """base64 PNG of `image` with one more chunk after the header (a damaged or hostile one)."""
    raw = encode_gray_png(image)
    chunk = struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b64(raw[:33] + chunk + raw[33:])  # 33: the signature and the IHDR chunk


def png_cut_header() -> str:
    """A PNG whose IHDR chunk holds 10 bytes, not 13."""
    data = struct.pack(">IIBB", 256, 256, 8, 0)
    return b64(PNG_MAGIC + struct.pack(">I", len(data)) + b"IHDR" + data + struct.pack(">I", zlib.crc32(b"IHDR" + data)))


def _bad_requests(samples: Path) -> list[tuple[str, str, dict | bytes, str]]:
    """(test id, path, body, field the error must name)."""
    good = dmiai_request(samples, CASE)
    gray = np.full((256, 256), 90, np.uint8)
    mask = np.where(np.arange(256)[:, None] < 128, 255, 0).astype(np.uint8) * np.ones((1, 256), np.uint8)
    cases = [
        ("invalid-base64", "/predict", {**good, "mask_image": "not base64!"}, "mask_image"),
        ("not-a-png", "/predict", {**good, "corrupted_image": b64(b"GIF89a\x01\x00\x01\x00")}, "corrupted_image"),
        ("jpeg", "/predict", {**good, "tissue_image": b64(cv2.imencode(".jpg", gray)[1].tobytes())}, "tissue_image"),
        ("colour-png", "/predict", {**good, "corrupted_image": png(gray, "RGB")}, "corrupted_image"),
        ("16-bit-png", "/predict", {**good, "corrupted_image": png(gray.astype(np.int32) * 200, "I;16")}, "corrupted_image"),
        ("wrong-size", "/predict", {**good, "corrupted_image": png(np.zeros((128, 256), np.uint8))}, "corrupted_image"),
        ("mask-not-0-255", "/predict", {**good, "mask_image": png(np.where(mask > 0, 255, 17).astype(np.uint8))}, "mask_image"),
        ("tissue-levels", "/predict", {**good, "tissue_image": png(np.full((256, 256), 50, np.uint8))}, "tissue_image"),
        ("vertebra-too-high", "/predict", {**good, "vertebrae": 25}, "vertebrae"),
        ("vertebra-negative", "/predict", {**good, "vertebrae": -1}, "vertebrae"),
        ("vertebra-not-int", "/predict", {**good, "vertebrae": "L3"}, "vertebrae"),
        ("vertebra-fractional", "/predict", {**good, "vertebrae": 5.5}, "vertebrae"),
        ("vertebra-fractional-string", "/predict", {**good, "vertebrae": "5.5"}, "vertebrae"),
        ("vertebra-as-bool", "/predict", {**good, "vertebrae": True}, "vertebrae"),
        ("image-not-string", "/predict", {**good, "corrupted_image": 5}, "corrupted_image"),
        ("not-json", "/predict", b"{corrupted_image:", "body"),
        ("not-utf8", "/predict", b'{"corrupted_image": "\xff\xfe"}', "body"),
        ("png-empty-gama-chunk", "/predict", {**good, "mask_image": png_with_chunk(mask, b"gAMA", b"")}, "mask_image"),
        ("png-cut-header", "/predict", {**good, "tissue_image": png_cut_header()}, "tissue_image"),
        ("png-text-bomb", "/predict", {**good, "corrupted_image": png_with_chunk(gray, b"zTXt", b"k\0\0" + zlib.compress(bytes(3 << 20)))},
         "corrupted_image"),
        ("json-list", "/predict", b"[1, 2]", "body"),
        ("page-mask-not-0-255", "/inpaint", {"corrupted_image": png(gray), "mask_image": png(gray)}, "mask_image"),
        ("batch-item", "/predict/batch", {"items": [good, {**good, "mask_image": png(gray)}]}, "items.1.mask_image"),
        ("batch-missing", "/predict/batch", {"items": [good, {k: v for k, v in good.items() if k != "vertebrae"}]}, "items.1.vertebrae"),
        ("batch-empty", "/predict/batch", {"items": []}, "items"),
        ("batch-too-long", "/predict/batch", {"items": [good] * 33}, "items"),
    ]
    cases += [(f"missing-{k}", "/predict", {f: v for f, v in good.items() if f != k}, k) for k in good]
    return cases


def test_an_error_of_ours_is_a_500_in_the_error_shape_and_keeps_the_connection(tiny_checkpoint: Path) -> None:
    app = create_app(tiny_checkpoint)

    async def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/broken", broken)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        answer = c.get("/broken")
        assert answer.status_code == 500 and answer.json() == {"detail": "internal server error", "field": None}
        assert c.get("/health").status_code == 200  # the same keep-alive connection: not reset


@pytest.mark.parametrize(("path", "body", "field"), [pytest.param(*case[1:], id=case[0]) for case in _bad_requests(sample_dir())])
def test_bad_input_is_a_4xx_naming_the_field(client: httpx.Client, path: str, body: dict | bytes, field: str) -> None:
    if isinstance(body, bytes):
        answer = client.post(path, content=body, headers={"content-type": "application/json"})
    else:
        answer = client.post(path, json=body)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
    error = answer.json()
    assert error["field"] == field and error["detail"].startswith(field), error


def test_a_body_that_is_no_json_object_is_told_what_to_send(client: httpx.Client) -> None:
    for content, kind in ((b'{"corrupted_image": "x"}', "text/plain"), (b"{corrupted_image:", "application/json")):
        answer = client.post("/predict", content=content, headers={"content-type": kind})
        assert answer.status_code == 422 and answer.json()["field"] == "body"
        assert answer.json()["detail"].endswith("send a JSON object of the fields, with Content-Type: application/json")
    assert "(Expecting property name enclosed in double quotes)" in answer.json()["detail"]


def test_body_over_the_limit_is_refused_before_it_is_read(client: httpx.Client) -> None:
    huge = b"{" + b" " * (1 << 20) + b"}"
    declared = client.post("/predict", content=huge, headers={"content-type": "application/json"})
    streamed = client.post("/predict", content=iter([huge[i:i + 65536] for i in range(0, len(huge), 65536)]),
                           headers={"content-type": "application/json"})  # chunked: no Content-Length
    for answer in (declared, streamed):
        assert answer.status_code == 413 and answer.json()["field"] == "body"
    assert client.get("/health").status_code == 200  # and the server is still up


def test_app_factory_reads_the_environment(tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDINPAINT_WEIGHTS", str(tiny_checkpoint))
    monkeypatch.setenv("MEDINPAINT_MAX_BATCH", "")
    assert app_from_env().state.batcher.max_batch == 1  # on CPU batching is off unless asked for
    monkeypatch.setenv("MEDINPAINT_MAX_BATCH", "3")
    app = app_from_env()
    assert app.state.inpainter.name == "tiny" and app.state.batcher.max_batch == 3


def test_cli_serve_runs_the_server(tiny_checkpoint: Path, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with serve_in_subprocess("--weights", str(tiny_checkpoint), log=log) as url:
        health = httpx.get(f"{url}/health").json()
        assert health["checksum"] == file_checksum(tiny_checkpoint) and health["backend"] == resolve_backend("auto", "cpu")
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    assert any(line.get("path") == "/health" and line.get("status") == 200 for line in lines)
    assert f"page: {url}/ui/  API docs: {url}/docs" in log.read_text()


@pytest.mark.parametrize(("host", "url"), [("127.0.0.1", "http://127.0.0.1:9050"), ("0.0.0.0", "http://127.0.0.1:9050"),
                                           ("::", "http://[::1]:9050"), ("fe80::1", "http://[fe80::1]:9050"),
                                           ("myhost", "http://myhost:9050")])
def test_the_printed_address_opens_in_a_browser(host: str, url: str) -> None:
    assert browser_url(host, 9050) == url


def test_cli_serve_reports_a_missing_checkpoint(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["serve", "--weights", str(tmp_path / "none.safetensors")])
    assert result.exit_code == 2 and "no such checkpoint" in result.output


@pytest.mark.parametrize("workers", ["1", "2"])
def test_cli_serve_refuses_a_checkpoint_of_another_kind_before_any_worker_starts(workers: str) -> None:
    """With several workers each loads the model itself: a bad checkpoint must fail once, here, in one line (it
    was a traceback per worker, restarted without end), and the address is printed only for a loaded model."""
    segmenter = Path(__file__).resolve().parents[1] / "src" / "medinpaint" / "weights" / "ct-segmenter.safetensors"
    result = CliRunner().invoke(cli, ["serve", "--workers", workers, "--port", str(free_port()), "--weights", str(segmenter)])
    assert result.exit_code == 2 and result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    assert "page:" not in result.output


def test_the_bundled_samples_are_listed_and_served(client: httpx.Client, samples: Path) -> None:
    cases = client.get("/samples").json()
    assert len(cases) == 12 and cases[0] == {"id": "450_0", "vertebrae": int((samples / "vertebrae" / "vertebrae_450_0.txt").read_text())}
    png = client.get("/sample-files/mask/mask_450_0.png")
    assert png.status_code == 200 and png.content == (samples / "mask" / "mask_450_0.png").read_bytes()
    assert client.get("/sample-files/../pyproject.toml").status_code == 404


def test_an_oversized_png_is_refused_from_its_header(client: httpx.Client, samples: Path) -> None:
    good = dmiai_request(samples, CASE)
    large = client.post("/predict", json={**good, "corrupted_image": png_header(9000, 9000)})
    bomb = client.post("/predict", json={**good, "mask_image": png_header(40000, 40000)})
    assert large.status_code == bomb.status_code == 422
    assert large.json()["detail"] == "corrupted_image: expected a 256x256 image, got 9000x9000"
    assert bomb.json()["detail"].startswith("mask_image: image too large to decode")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_cli_serve_holds_its_port_while_the_model_loads(workers: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A port found free and then left open while the model loads could be taken by another server meanwhile, and
    uvicorn would fail after the load. Another bind (SO_REUSEADDR, as uvicorn binds) must fail during the load."""
    from medinpaint.errors import InputError
    from medinpaint.serve import server

    port, seen = free_port(), []

    def loading(*args, **kwargs):
        with socket.socket() as other:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                other.bind(("127.0.0.1", port))
                seen.append("bound")
            except OSError as e:
                seen.append(e.errno)
        raise InputError("stopped in the load")

    monkeypatch.setattr(server, "create_app", loading)
    monkeypatch.setattr(server.Inpainter, "from_pretrained", loading)
    result = CliRunner().invoke(cli, ["serve", "--port", str(port), "--workers", workers])
    assert result.exit_code == 2 and "stopped in the load" in result.output
    assert seen == [errno.EADDRINUSE]
    with socket.socket() as again:  # and it is let go when the command fails
        again.bind(("127.0.0.1", port))


def test_cli_serve_reports_a_taken_port_before_loading(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", "--port", str(port), "--weights", str(tmp_path / "none.safetensors")])
    # the port is named, in one line, before the (missing) checkpoint is even looked at
    assert result.exit_code == 2 and f"127.0.0.1:{port}: cannot listen there" in result.output
    assert "no such checkpoint" not in result.output and "page:" not in result.output
    assert "another server may hold it" in result.output
    result = CliRunner().invoke(cli, ["serve", "--host", "nonsense.invalid", "--weights", str(tmp_path / "none.safetensors")])
    assert result.exit_code == 2 and "check --host" in result.output and "another server" not in result.output, result.output
