"""The page in a real headless Chromium: load a slice, draw the mask with the mouse, fill, see and compare the result."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from medinpaint.data.png import decode_gray_png, read_gray_png, write_gray_png
from medinpaint.inference import Inpainter
from medinpaint.serve import create_app
from medinpaint.serve.server import serve_in_thread

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"the browser test needs Debian's chromium at {CHROMIUM}")


@pytest.fixture(scope="module")
def page_url(tiny_checkpoint: Path) -> Iterator[str]:
    with serve_in_thread(create_app(tiny_checkpoint)) as url:
        yield f"{url}/ui/"


@pytest.fixture
def page(page_url: str) -> Iterator:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.goto(page_url)
        yield tab
        browser.close()
        assert not errors, errors


def test_draw_fill_compare_download(page, samples: Path, tiny_checkpoint: Path) -> None:
    slice_png = samples / "ct" / "ct_450_0.png"
    page.set_input_files("#slice-file", str(slice_png))
    page.wait_for_function("!document.getElementById('fill').disabled")
    box = page.locator("#editor").bounding_box()  # 512 css px for 256 pixels: 2 css px a pixel
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + 100, y)
    page.mouse.down()
    page.mouse.move(box["x"] + 400, y, steps=10)
    page.mouse.up()
    with page.expect_request("**/inpaint") as sent:
        page.click("#fill")
    page.wait_for_selector("#result-panel:not([hidden])")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Filled')")

    body = json.loads(sent.value.post_data)
    assert set(body) == {"corrupted_image", "mask_image"}  # no tissue map or vertebra given
    mask = decode_gray_png(base64.b64decode(body["mask_image"]), "mask") == 255
    rows, cols = np.nonzero(mask)
    radius = 6  # the brush is 12 pixels wide; the stroke ran from pixel (50, 128) to (200, 128)
    assert np.allclose([rows.min(), rows.max(), cols.min(), cols.max()], [128 - radius, 128 + radius, 50 - radius, 200 + radius], atol=1)
    original = read_gray_png(slice_png)
    corrupted = decode_gray_png(base64.b64decode(body["corrupted_image"]), "corrupted")
    np.testing.assert_array_equal(corrupted, np.where(mask, 0, original))  # zeros under the mask, the slice elsewhere

    src = page.get_attribute("#result", "src")
    shown = decode_gray_png(base64.b64decode(src.split(",", 1)[1]), "result")
    np.testing.assert_array_equal(shown, Inpainter.from_pretrained(tiny_checkpoint).predict(corrupted, mask))
    assert page.get_attribute("#download", "href") == src and page.get_attribute("#download", "download") == "filled.png"
    page.locator("#compare").fill("20")
    assert "inset(0px 80%" in page.eval_on_selector("#result", "e => getComputedStyle(e).clipPath")


def test_page_shows_server_and_size_errors(page, samples: Path, tmp_path: Path) -> None:
    page.click("#clear-mask")
    page.set_input_files("#slice-file", str(samples / "ct" / "ct_450_0.png"))
    page.wait_for_function("!document.getElementById('fill').disabled")
    page.click("#fill")  # nothing drawn yet
    assert "Mark some missing pixels" in page.text_content("#status")
    page.set_input_files("#mask-file", str(samples / "mask" / "mask_450_0.png"))
    page.set_input_files("#tissue-file", str(samples / "ct" / "ct_450_0.png"))  # not a tissue map: the server says so
    page.click("#fill")
    page.wait_for_function("document.getElementById('status').classList.contains('error') && "
                           "document.getElementById('status').textContent.includes('tissue_image: values must be')")
    small = tmp_path / "small.png"
    write_gray_png(small, np.zeros((2, 2), np.uint8))
    page.set_input_files("#slice-file", str(small))
    page.wait_for_function("document.getElementById('status').textContent.includes('must be 256×256')")
