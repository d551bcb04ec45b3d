"""The segmentation family: metrics, learning, the Python API, the commands and their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medinpaint.baselines import threshold_tissue
from medinpaint.checkpoint import read_metadata
from medinpaint.cli import app
from medinpaint.data import read_slices
from medinpaint.data.slices import to_uint8
from medinpaint.errors import InputError
from medinpaint.metrics import SegmentationMetrics, dice, jaccard
from medinpaint.models import SegmenterConfig
from medinpaint.segmentation.data import read_labelled
from medinpaint.segmentation.inference import Segmenter, default_weights
from medinpaint.segmentation.task import SegTrainConfig, train_segmenter

TINY = SegmenterConfig(base_channels=8, depth=3)


def cli(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_dice_and_jaccard_equal_hand_computed_values() -> None:
    pred = np.array([[1, 1, 0], [0, 1, 0]], bool)
    truth = np.array([[1, 0, 0], [0, 1, 1]], bool)
    assert dice(pred, truth) == pytest.approx(2 * 2 / (3 + 3))
    assert jaccard(pred, truth) == pytest.approx(2 / 4)
    assert dice(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    m = SegmentationMetrics(("background", "body", "fat"))
    row = m("a", np.array([[0, 1, 2, 2]]), np.array([[0, 1, 1, 2]]))
    assert row["dice_fat"] == pytest.approx(2 / 3) and row["jaccard_body"] == pytest.approx(1 / 2)
    assert row["fat_fraction_error"] == pytest.approx(2 / 3 - 1 / 3)
    assert m.aggregate()["mean_dice"] == pytest.approx((2 / 3 + 2 / 3) / 2)


def test_a_class_nowhere_is_left_out_of_the_mean_and_one_foreground_class_has_no_fraction() -> None:
    m = SegmentationMetrics(("background", "body", "fat", "bone"))  # bone declared, in no label nor prediction
    m("a", np.array([[0, 1, 2, 2]]), np.array([[0, 1, 1, 2]]))
    summary = m.aggregate()
    assert summary["dice_bone"] == 1.0 and summary["absent_classes"] == ["bone"]
    assert summary["mean_dice"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    m("b", np.array([[3, 0, 0, 0]]), np.array([[0, 0, 0, 0]]))  # predicted once: scored, and wrong
    assert "absent_classes" not in m.aggregate() and m.aggregate()["dice_bone"] == 0.5
    binary = SegmentationMetrics(("background", "lesion"))
    row = binary("a", np.array([[0, 1]]), np.array([[1, 1]]))
    assert not any("fraction" in k for k in [*row, *binary.aggregate()])


def test_segment_evaluate_refuses_fractional_labels_and_reads_a_stack_file(tmp_path: Path) -> None:
    images, labels = shapes(4)
    data = write_npy_set(tmp_path / "shapes", images, labels)
    np.save(tmp_path / "pred.npy", labels.astype(np.float32))
    code, out = cli("segment", "evaluate", "--pred", tmp_path / "pred.npy", "--data", data, "-o", tmp_path / "r1")
    assert code == 0, out
    assert json.loads((tmp_path / "r1" / "summary.json").read_text())["mean_dice"] == 1.0
    np.save(tmp_path / "pred.npy", labels.astype(np.float32) * 0.9)  # 1.8 would be read as class 1
    code, out = cli("segment", "evaluate", "--pred", tmp_path / "pred.npy", "--data", data, "-o", tmp_path / "r2")
    assert code != 0 and "pred.npy: label maps must hold integers" in out and not (tmp_path / "r2").exists()
    code, out = cli("segment", "evaluate", "--pred", tmp_path / "nope.npy", "--data", data, "-o", tmp_path / "r3")
    assert code != 0 and "nope.npy: no such file" in out


def shapes(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Bright squares (class 1) and dark discs (class 2) on a mid-grey background: a task a U-Net learns at once."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.full((n, size, size), 120, np.uint8)
    labels = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        y, x = rng.integers(4, size - 12, 2)
        images[i, y : y + 8, x : x + 8], labels[i, y : y + 8, x : x + 8] = 230, 1
        cy, cx = rng.integers(6, size - 6, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < 16
        images[i][disc], labels[i][disc] = 20, 2
    images = np.clip(images + rng.normal(0, 8, images.shape), 0, 255).astype(np.uint8)
    return images, labels


def write_npy_set(folder: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "images.npy", images)
    np.save(folder / "labels.npy", labels)
    return folder


def test_the_segmenter_learns_a_shape_task_in_seconds(tmp_path: Path) -> None:
    data = read_labelled(write_npy_set(tmp_path / "shapes", *shapes(40)))
    assert data.values == (0, 1, 2) and data.names == ("class_0", "class_1", "class_2")
    cfg = SegTrainConfig(steps=150, batch_size=8, lr=3e-3, warmup_steps=10, val_every=150, val_cases=8, network=TINY)
    weights = train_segmenter(data, tmp_path / "run", cfg, device="cpu", progress=False)
    seg = Segmenter.from_pretrained(weights)
    images, labels = shapes(8, seed=9)
    pred = seg.predict(images)
    assert dice(pred == 1, labels == 1) > 0.9 and dice(pred == 2, labels == 2) > 0.9
    assert np.array_equal(seg.predict(images[0]), pred[0])


def test_segment_train_predict_evaluate_on_a_dmiai_folder(phantom_dataset: Path, tmp_path: Path) -> None:
    code, out = cli("segment", "train", "--data", phantom_dataset, "-o", tmp_path / "run", "--steps", 4, "--batch-size", 2,
                    "--base-channels", 8, "--depth", 3, "--device", "cpu", "--no-progress")
    assert code == 0, out
    weights = tmp_path / "run" / "model.safetensors"
    code, out = cli("segment", "predict", "-i", phantom_dataset, "-o", tmp_path / "pred", "--weights", weights, "--no-progress")
    assert code == 0, out
    ids = read_slices(phantom_dataset).ids
    written = sorted(p.stem for p in (tmp_path / "pred").iterdir())
    assert written == sorted(ids)
    from medinpaint.data.png import read_gray_png

    slices = read_slices(phantom_dataset)
    segmenter = Segmenter.from_pretrained(weights)
    np.testing.assert_array_equal(segmenter.to_values(np.array([[0, 1, 2]])), [[0, 100, 255]])  # background, body, fat
    expected = segmenter.to_values(segmenter.predict(to_uint8(slices.truth)))
    for i, case in enumerate(ids):  # the written map is the network's, in the tissue coding (100 body, 255 fat)
        np.testing.assert_array_equal(read_gray_png(tmp_path / "pred" / f"{case}.png"), expected[i])
    code, out = cli("segment", "evaluate", "--pred", tmp_path / "pred", "--data", phantom_dataset, "-o", tmp_path / "report")
    assert code == 0, out
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert list(summary)[:3] == ["mean_dice", "dice_body", "dice_fat"] and summary["n"] == len(ids)
    (tmp_path / "truth").mkdir()  # the truth as the prediction scores 1, and swapping body and fat does not
    for case in ids:
        (tmp_path / "truth" / f"{case}.png").write_bytes((phantom_dataset / "tissue" / f"tissue_{case}.png").read_bytes())
    code, out = cli("segment", "evaluate", "--pred", tmp_path / "truth", "--data", phantom_dataset, "-o", tmp_path / "perfect")
    assert code == 0, out
    perfect = json.loads((tmp_path / "perfect" / "summary.json").read_text())
    assert perfect["dice_body"] == perfect["dice_fat"] == perfect["mean_dice"] == 1.0
    assert (tmp_path / "report" / "cases.png").stat().st_size > 1000
    assert (tmp_path / "report" / "per_case.csv").read_text().count("\n") == len(ids) + 1



def test_segment_predict_needs_no_labels_in_the_models_coding(phantom_dataset: Path, tmp_path: Path) -> None:
    """A model of classes 0..2 segments a DM-i-AI folder whose tissue maps use 0/100/255: prediction reads images only."""
    code, out = cli("segment", "train", "--data", write_npy_set(tmp_path / "shapes", *shapes(8)), "-o", tmp_path / "run",
                    "--steps", 1, "--batch-size", 2, "--base-channels", 8, "--depth", 3, "--device", "cpu", "--no-progress")
    assert code == 0, out
    code, out = cli("segment", "predict", "-i", phantom_dataset, "-o", tmp_path / "pred", "--weights",
                    tmp_path / "run" / "model.safetensors", "--no-progress")
    assert code == 0, out
    assert sorted(p.stem for p in (tmp_path / "pred").iterdir()) == sorted(read_slices(phantom_dataset).ids)


def test_segment_train_fine_tunes_the_shipped_segmenter(phantom_dataset: Path, tmp_path: Path) -> None:
    code, out = cli("segment", "train", "--data", phantom_dataset, "-o", tmp_path / "run", "--init", "default", "--steps", 1,
                    "--batch-size", 2, "--device", "cpu", "--no-progress")
    assert code == 0, out
    tuned, shipped = read_metadata(tmp_path / "run" / "model.safetensors"), read_metadata(default_weights())
    assert tuned.config == shipped.config and tuned.training.started_from.startswith("ct-segmenter.safetensors sha256:")


def test_thresholding_finds_phantom_fat(phantom_dataset: Path) -> None:
    data = read_labelled(phantom_dataset)
    pred = threshold_tissue(data.images)
    assert dice(pred == 2, data.labels == 2) > 0.8 and dice(pred > 0, data.labels > 0) > 0.9


@pytest.mark.skipif(not default_weights().is_file(), reason="no shipped segmenter in this checkout")
def test_the_shipped_segmenter_beats_thresholding_on_the_bundled_samples(samples: Path) -> None:
    data = read_labelled(samples)
    pred = Segmenter.from_pretrained().predict(data.images)
    assert dice(pred == 2, data.labels == 2) > dice(threshold_tissue(data.images) == 2, data.labels == 2)


def test_bad_labels_are_one_line_errors(tmp_path: Path) -> None:
    images, labels = shapes(6)
    folder = write_npy_set(tmp_path / "a", images, labels[:, :16])
    with pytest.raises(InputError, match=r"labels.npy: shape .* does not match images"):
        read_labelled(folder)
    folder = write_npy_set(tmp_path / "b", images, labels)
    with pytest.raises(InputError, match="label value 2 is not one of the declared classes"):
        read_labelled(folder, values=(0, 1))
    for values in ((0, 1, 300), (0, 1, -1), (0, 1, 1, 2)):  # out of range would index past, or wrap around, the table
        with pytest.raises(InputError, match=r"each must be a distinct label value in 0\.\.255"):
            read_labelled(folder, values=values)
    folder = write_npy_set(tmp_path / "c", images, np.minimum(labels, 1).astype(np.uint8))
    data = read_labelled(folder, values=(0, 1, 2))
    cfg = SegTrainConfig(steps=1, network=TINY)
    with pytest.raises(InputError, match=r"class 2 \(class_2, label value 2\) appears in no training label"):
        train_segmenter(data, tmp_path / "run", cfg, device="cpu", progress=False)
    write_npy_set(tmp_path / "d", images[:0], labels[:0])
    code, out = cli("segment", "train", "--data", tmp_path / "d", "-o", tmp_path / "run2", "--steps", 1)
    assert code == 2 and "the dataset is empty" in out and len(out.strip().splitlines()) == 1
    np.save(tmp_path / "b" / "labels.npy", labels.astype(np.float32))
    with pytest.raises(InputError, match="label maps must hold integers"):
        read_labelled(tmp_path / "b")
