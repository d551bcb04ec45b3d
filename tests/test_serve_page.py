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


def test_a_sample_is_filled_in_one_choice_and_the_mask_shows_over_the_result(page, samples: Path) -> None:
    with page.expect_request("**/inpaint") as sent:
        page.select_option("#sample", "453_3")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Filled')")
    body = json.loads(sent.value.post_data)
    assert body["vertebrae"] == int((samples / "vertebrae" / "vertebrae_453_3.txt").read_text())
    tissue = decode_gray_png(base64.b64decode(body["tissue_image"]), "tissue")
    np.testing.assert_array_equal(tissue, read_gray_png(samples / "tissue" / "tissue_453_3.png"))
    mask = read_gray_png(samples / "mask" / "mask_453_3.png") == 255
    np.testing.assert_array_equal(decode_gray_png(base64.b64decode(body["mask_image"]), "mask") == 255, mask)
    tinted = page.evaluate("""() => {
        const data = document.getElementById('result-mask').getContext('2d').getImageData(0, 0, 256, 256).data;
        let n = 0; for (let i = 3; i < data.length; i += 4) n += data[i] > 0; return n; }""")
    assert tinted == mask.sum()
    page.uncheck("#show-mask")
    assert page.locator("#result-mask").is_hidden()


def shown_slice(page) -> np.ndarray:
    return np.array(page.evaluate("Array.from(state.slice)")).reshape(256, 256)


def expected_slice(display: np.ndarray) -> np.ndarray:
    """A display slice in HU as the page shows it: nearest-neighbour resized to 256x256, in the CT window."""
    rows, cols = (np.arange(256) * n // 256 for n in display.shape)
    return np.rint(255 * np.clip((display[np.ix_(rows, cols)] + 150) / 400, 0, 1))


def test_a_nifti_volume_gives_a_slice_picker(page, tmp_path: Path) -> None:
    nib = pytest.importorskip("nibabel")
    hu = np.random.default_rng(0).integers(-1000, 400, (64, 48, 5)).astype(np.int16)  # RAS, x by y by z
    nib.save(nib.Nifti1Image(hu, np.diag([2.0, 2.0, 5.0, 1.0])), str(tmp_path / "scan.nii.gz"))
    page.set_input_files("#volume-file", str(tmp_path / "scan.nii.gz"))
    page.wait_for_selector("#slice-picker:not([hidden])")
    assert page.text_content("#slice-number") == "3 of 5" and "64×48×5" in page.text_content("#status")
    page.locator("#slice-index").fill("1")
    assert page.text_content("#slice-number") == "2 of 5"
    display = hu[::-1, ::-1, 1].T  # anterior up, the patient's right on the left: rows y, columns x, both reversed
    assert np.abs(shown_slice(page) - expected_slice(display)).max() <= 1
    assert not page.is_disabled("#fill")
    assert "Stored" not in page.text_content("#status") and "no orientation" not in page.text_content("#status")


def rotation_z(degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


@pytest.mark.parametrize(
    ("name", "rzs", "codes", "said"),
    [
        ("lps", np.diag([-2.0, -2.0, 5.0]), "sform", "Stored LPS"),
        ("permuted", np.array([[0, 0, -2.0], [2.0, 0, 0], [0, 5.0, 0]]), "sform", "Stored ASL"),
        ("rotated-qform", rotation_z(20) @ np.diag([2.0, 2.0, -5.0]), "qform", "Stored RAI"),  # qfac -1, qform only
        ("no-codes", np.diag([2.0, 2.0, 5.0]), "none", "no orientation"),  # read as NIfTI's default, LAS
    ],
)
def test_a_nifti_volume_is_shown_turned_as_predict_turns_it(page, tmp_path: Path, name: str, rzs: np.ndarray,
                                                          codes: str, said: str) -> None:
    """Whatever the stored orientation, the page shows the display slices medinpaint predict fills."""
    nib = pytest.importorskip("nibabel")
    from medinpaint.data.volumes import display_stack

    hu = np.random.default_rng(1).integers(-1000, 400, (40, 36, 6)).astype(np.int16)
    affine = np.eye(4)
    affine[:3, :3] = rzs
    image = nib.Nifti1Image(hu, affine)
    image.set_sform(affine if codes == "sform" else None, code=2 if codes == "sform" else 0)
    image.set_qform(affine if codes == "qform" else None, code=1 if codes == "qform" else 0)
    path = tmp_path / f"{name}.nii.gz"
    nib.save(image, str(path))
    stack = display_stack(hu, nib.load(str(path)).affine, 2)
    page.set_input_files("#volume-file", str(path))
    page.wait_for_function(f"document.getElementById('slice-number').textContent.endsWith('of {len(stack)}') && "
                           f"document.getElementById('status').textContent.startsWith('{name}.nii.gz')")
    assert said in page.text_content("#status")
    for k in (0, len(stack) - 1):
        page.locator("#slice-index").fill(str(k))
        assert np.abs(shown_slice(page) - expected_slice(stack[k])).max() <= 1, (name, k)


def test_a_new_slice_after_a_sample_sends_none_of_the_samples_side_information(page, samples: Path) -> None:
    page.select_option("#sample", "453_3")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Filled')")
    page.set_input_files("#slice-file", str(samples / "ct" / "ct_450_0.png"))
    page.wait_for_function("document.getElementById('result-panel').hidden")  # the old result is gone
    assert page.input_value("#sample") == "" and page.input_value("#vertebrae") == ""
    assert page.evaluate("state.mask.every((m) => m === 0)")  # and the old mask
    page.set_input_files("#mask-file", str(samples / "mask" / "mask_450_0.png"))
    with page.expect_request("**/inpaint") as sent:
        page.click("#fill")
    assert set(json.loads(sent.value.post_data)) == {"corrupted_image", "mask_image"}


def test_a_refused_or_cleared_tissue_map_is_not_sent(page, samples: Path, tmp_path: Path) -> None:
    page.select_option("#sample", "453_3")  # the sample brings its tissue map
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Filled')")
    small = tmp_path / "small.png"
    write_gray_png(small, np.zeros((2, 2), np.uint8))
    page.set_input_files("#tissue-file", str(small))
    page.wait_for_function("document.getElementById('status').textContent.includes('the tissue map must be 256×256')")
    with page.expect_request("**/inpaint") as sent:
        page.click("#fill")
    assert "tissue_image" not in json.loads(sent.value.post_data)
    page.set_input_files("#tissue-file", str(samples / "tissue" / "tissue_453_3.png"))
    page.wait_for_function("state.tissue !== null")
    page.set_input_files("#tissue-file", [])  # cleared by the user
    page.wait_for_function("state.tissue === null")
    with page.expect_request("**/inpaint") as sent:
        page.click("#fill")
    assert "tissue_image" not in json.loads(sent.value.post_data)


def test_only_the_latest_fill_is_shown_and_a_non_json_answer_is_reported(page) -> None:
    held = []
    page.route("**/inpaint", lambda route: held.append(route))  # hold every fill until the test lets it through
    page.select_option("#sample", "450_0")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Filling')")
    page.select_option("#sample", "459_9")
    for _ in range(200):  # until the second fill is held too (the browser's time, not a fixed wait)
        if len(held) == 2:
            break
        page.wait_for_timeout(50)
    assert len(held) == 2
    latest = json.loads(held[1].request.post_data)["corrupted_image"]
    held[1].continue_()
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Filled') && state.settled === 1")
    held[0].continue_()  # the first sample's fill arrives last, and is dropped
    page.wait_for_function("state.settled === 2")
    assert page.get_attribute("#before", "src").endswith(latest)
    page.unroute("**/inpaint")
    page.route("**/inpaint", lambda route: route.fulfill(status=502, body="<html>Bad Gateway</html>", content_type="text/html"))
    page.click("#fill")
    page.wait_for_function("document.getElementById('status').textContent.includes('the server answered 502')")


def test_a_changed_input_or_a_failed_fill_hides_the_result_and_a_refused_file_is_not_kept(page, samples: Path, tmp_path: Path) -> None:
    """A result stays on screen only while it answers what the page would send: another mask, a failed fill or a
    refused file must not leave an earlier result showing (and downloadable) as if it were the answer."""
    page.select_option("#sample", "450_0")
    page.wait_for_selector("#result-panel:not([hidden])")
    sent = page.evaluate("Array.from(state.slice)")
    page.set_input_files("#mask-file", str(samples / "mask" / "mask_453_3.png"))
    page.wait_for_function("document.getElementById('result-panel').hidden")
    page.set_input_files("#tissue-file", str(samples / "ct" / "ct_450_0.png"))  # not a tissue map
    page.click("#fill")
    page.wait_for_function("document.getElementById('status').textContent.includes('tissue_image: values must be')")
    assert page.locator("#result-panel").is_hidden() and page.get_attribute("#download", "href") == "#"
    small = tmp_path / "small.png"
    write_gray_png(small, np.zeros((2, 2), np.uint8))
    page.set_input_files("#slice-file", str(small))
    page.wait_for_function("document.getElementById('status').textContent.includes('must be 256×256')")
    assert page.evaluate("document.getElementById('slice-file').files.length") == 0  # not shown as the slice loaded
    assert page.evaluate("Array.from(state.slice)") == sent


def test_a_truncated_nifti_volume_is_refused_by_name(page, tmp_path: Path) -> None:
    nib = pytest.importorskip("nibabel")
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 20), np.int16), np.eye(4)), str(tmp_path / "whole.nii"))
    data = (tmp_path / "whole.nii").read_bytes()
    for name, cut in (("half.nii", len(data) - 16 * 16 * 10 * 2), ("odd.nii", len(data) - 1)):
        (tmp_path / name).write_bytes(data[:cut])
        page.set_input_files("#volume-file", str(tmp_path / name))
        page.wait_for_function(f"document.getElementById('status').textContent.startsWith('{name}: truncated')")
    assert page.locator("#slice-picker").is_hidden()


def test_the_page_fits_a_phone(page_url: str) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 375, "height": 740})
        tab.goto(page_url)
        assert tab.evaluate("document.documentElement.scrollWidth") <= 375
        box = tab.locator("#editor").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 375 and abs(box["width"] - box["height"]) < 1
        browser.close()


def test_the_api_docs_render_offline(page_url: str) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    base = page_url.removesuffix("/ui/")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        tab = browser.new_page()
        outside: list[str] = []
        tab.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base)
                  else (outside.append(route.request.url), route.abort()))
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.goto(f"{base}/docs")
        tab.locator(".opblock-summary-path", has_text="/predict/batch").wait_for(timeout=20_000)  # Swagger UI drew the schema
        paths = tab.locator(".opblock-summary-path").all_inner_texts()
        browser.close()
    assert {"/predict", "/predict/batch", "/health"} <= {p.strip() for p in paths}
    assert not outside and not errors, (outside, errors)
