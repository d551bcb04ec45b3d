import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medinpaint.data import read_slices, split_by_patient
from medinpaint.data.cache import INDEX, pack
from medinpaint.data.png import write_gray_png
from medinpaint.data.readers import detect_layout
from medinpaint.data.writers import write_predictions
from medinpaint.errors import InputError
from medinpaint.inference import Inpainter


def test_reads_dmiai_layout_with_truth_and_side_information(samples: Path) -> None:
    s = read_slices(samples, require_masks=True)
    assert len(s) == 12 and s.images.shape == (12, 256, 256) and s.images.dtype == np.uint8
    assert s.ids[0] == "450_0" and s.layout == "dmiai"
    # corrupted == ct outside the mask, 0 inside: the data facts the model relies on
    assert np.array_equal(s.images[~s.masks], s.truth[~s.masks])
    assert (s.images[s.masks] == 0).all()
    assert set(np.unique(s.tissue)) <= {0, 100, 255}
    assert s.vertebrae.dtype == np.int16 and 0 <= s.vertebrae.min() and s.vertebrae.max() <= 24
    assert s.vertebrae[0] == int((samples / "vertebrae" / "vertebrae_450_0.txt").read_text())


def test_reads_npy_stacks_of_both_shapes_and_dtypes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    floats = rng.random((5, 1, 16, 16)).astype(np.float32)
    np.save(tmp_path / "f.npy", floats)
    s = read_slices(tmp_path / "f.npy")
    assert s.images.shape == (5, 16, 16) and s.source_shape == (5, 1, 16, 16)
    assert np.array_equal(s.images, floats[:, 0])
    folder = tmp_path / "stack"
    folder.mkdir()
    np.save(folder / "images.npy", (floats[:, 0] * 255).astype(np.uint8))
    np.save(folder / "masks.npy", floats[:, 0] > 0.5)
    s = read_slices(folder, require_masks=True)
    assert s.images.dtype == np.uint8 and s.masks.dtype == bool and s.masks.sum() == (floats > 0.5).sum()


def test_reads_png_pairs(tmp_path: Path) -> None:
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    img = np.arange(64, dtype=np.uint8).reshape(8, 8)
    write_gray_png(tmp_path / "images" / "a.png", img)
    write_gray_png(tmp_path / "masks" / "a.png", np.where(img > 30, 255, 0).astype(np.uint8))
    s = read_slices(tmp_path, require_masks=True)
    assert s.ids == ["a"] and s.layout == "png" and s.masks.sum() == 33


def _dangling(path: Path) -> None:
    """`path` replaced by a link to nothing: listed in its folder, but not there to read."""
    path.unlink()
    path.symlink_to(path.parent / "gone")


def _unreadable(path: Path) -> None:
    """`path` replaced by a link to /proc/self/mem: a file that exists but fails to read (EIO), even for root."""
    path.unlink()
    path.symlink_to("/proc/self/mem")


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda d: (d / "mask" / "mask_000_0.png").write_bytes(b"not a png"), "mask_000_0.png: not a PNG image"),
        (lambda d: _dangling(d / "ct" / "ct_000_1.png"), "ct_000_1.png: unreadable (No such file or directory)"),
        (lambda d: _unreadable(d / "vertebrae" / "vertebrae_000_0.txt"), "vertebrae_000_0.txt: unreadable (Input/output error)"),
        (lambda d: (d / "ct" / "notes.txt").write_text("x"), "notes.txt: not a PNG file"),
        (lambda d: write_gray_png(d / "mask" / "mask_000_0.png", np.zeros((32, 32), np.uint8)), "mask_000_0.png: size 32x32"),
        (lambda d: write_gray_png(d / "mask" / "mask_000_0.png", np.zeros((64, 64), np.uint8)), "000_0 has no missing pixels"),
        (lambda d: write_gray_png(d / "mask" / "mask_000_0.png", np.full((64, 64), 7, np.uint8)), "mask values must be 0 and 255"),
        (lambda d: Image.new("RGB", (64, 64)).save(d / "ct" / "ct_000_0.png"), "ct_000_0.png: expected an 8-bit grayscale PNG, got a colour"),
        (lambda d: Image.new("I;16", (64, 64)).save(d / "ct" / "ct_000_0.png"), "got a 16-bit image"),
        (lambda d: (d / "vertebrae" / "vertebrae_000_0.txt").write_text("31"), "expected one integer 0..24"),
        (lambda d: (d / "tissue" / "tissue_000_1.png").unlink(), "no file for case 000_1"),
        (lambda d: (d / "corrupted" / "corrupted_000_1.png").unlink(), "mask_000_1.png: a mask with no image"),
        (lambda d: write_gray_png(d / "corrupted" / "corrupted_000_0.png", np.zeros((32, 32), np.uint8)),
         "corrupted_000_0.png: size 32x32 differs from 64x64"),
        (lambda d: write_gray_png(d / "tissue" / "tissue_000_1.png", np.full((64, 64), 7, np.uint8)),
         "tissue_000_1.png: tissue values must be"),
        (lambda d: (d / "vertebrae" / "vertebrae_000_0.txt").write_bytes(b"\xff\xfe7"), "vertebrae_000_0.txt: not a text file"),
        (lambda d: (d / "ct" / "extra.png").mkdir(), "extra.png: not a PNG file"),
        (lambda d: write_gray_png(d / "ct" / "000_0.png", np.zeros((64, 64), np.uint8)),
         "ct_000_0.png: the same case '000_0' as 000_0.png"),
    ],
)
def test_bad_dmiai_input_names_the_file_and_the_problem(phantom_dataset: Path, break_it, message: str) -> None:
    break_it(phantom_dataset)
    with pytest.raises(InputError, match=re.escape(message)):
        read_slices(phantom_dataset, require_masks=True)


def test_a_mask_with_no_image_in_png_pairs_is_named(tmp_path: Path) -> None:
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    for name in ("a", "b"):
        write_gray_png(tmp_path / "masks" / f"{name}.png", np.full((8, 8), 255, np.uint8))
    write_gray_png(tmp_path / "images" / "a.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(InputError, match="a mask with no image") as err:
        read_slices(tmp_path, require_masks=True)
    assert str(err.value).startswith(str(tmp_path / "masks" / "b.png"))


def test_png_pairs_match_by_the_same_name_or_by_their_prefix(tmp_path: Path) -> None:
    """`images/image_001.png` pairs with `masks/image_001.png` (the same name) as with `masks/mask_001.png`."""
    img = np.arange(64, dtype=np.uint8).reshape(8, 8)
    for mask_name in ("image_001.png", "mask_001.png"):
        root = tmp_path / mask_name
        for sub in ("images", "masks", "truth"):
            (root / sub).mkdir(parents=True)
        write_gray_png(root / "images" / "image_001.png", img)
        write_gray_png(root / "images" / "image_002.png", img)
        write_gray_png(root / "truth" / "image_001.png", img)
        write_gray_png(root / "truth" / "truth_002.png", img)
        write_gray_png(root / "masks" / mask_name, np.where(img > 30, 255, 0).astype(np.uint8))
        write_gray_png(root / "masks" / "002.png", np.where(img > 60, 255, 0).astype(np.uint8))
        s = read_slices(root, require_masks=True)
        assert s.ids == ["001", "002"] and s.masks.reshape(2, -1).sum(1).tolist() == [33, 3] and s.truth is not None


def test_a_nan_under_the_mask_of_images_npy_is_a_missing_pixel(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """What lies under the mask is never looked at, so a NaN there (a common way to mark a gap) is read as 0;
    at a known pixel, or with no masks to say the pixel is missing, it is refused."""
    folder = tmp_path / "stack"
    folder.mkdir()
    images = np.random.default_rng(1).random((2, 16, 16)).astype(np.float32)
    masks = np.zeros((2, 16, 16), bool)
    masks[:, 4:8, 4:8] = True
    np.save(folder / "images.npy", np.where(masks, np.nan, images).astype(np.float32))
    np.save(folder / "masks.npy", masks)
    s = read_slices(folder, require_masks=True)
    assert np.isfinite(s.images).all() and (s.images[masks] == 0).all()
    filled = Inpainter.from_pretrained(tiny_checkpoint, backend="torch").predict_slices(s)
    assert np.isfinite(filled).all() and np.array_equal(filled[~masks], images[~masks])
    spoilt = np.where(masks, np.nan, images).astype(np.float32)
    spoilt[1, 0, 0] = np.inf
    np.save(folder / "images.npy", spoilt)
    with pytest.raises(InputError, match=r"images\.npy: contains NaN or infinite values at known pixels \(slice 1\)"):
        read_slices(folder)
    (folder / "masks.npy").unlink()
    with pytest.raises(InputError, match=r"images\.npy: contains NaN or infinite values$"):
        read_slices(folder)


def test_float64_predictions_keep_the_dtype_shape_and_known_pixels(tmp_path: Path, tiny_checkpoint: Path) -> None:
    folder = tmp_path / "stack"
    folder.mkdir()
    images = np.random.default_rng(0).random((2, 1, 16, 16))
    masks = np.zeros((2, 16, 16), bool)
    masks[:, 4:8, 4:8] = True
    np.save(folder / "images.npy", images)
    np.save(folder / "masks.npy", masks)
    s = read_slices(folder, require_masks=True)
    filled = Inpainter.from_pretrained(tiny_checkpoint, backend="torch").predict_slices(s)
    out = np.load(write_predictions(tmp_path / "out", s, filled)[0])
    assert out.dtype == np.float64 and out.shape == images.shape
    assert np.array_equal(out[:, 0][~masks], images[:, 0][~masks])


@pytest.mark.parametrize(
    "part, array, message",
    [
        ("masks", np.full((2, 4, 4), 77), "mask values must be 0 and 255 (or 0 and 1, or boolean), found [77]"),
        ("masks", np.full((2, 4, 4), 0.3), "mask values must be 0 and 255"),
        ("masks", np.full((2, 4, 4), -255), "mask values must be 0 and 255"),
        ("tissue", np.full((2, 4, 4), 7), "tissue values must be (0, 100, 255), found [7]"),
        ("vertebrae", np.array([1, 99]), "(slice 1): expected one integer 0..24, found [99]"),
        ("vertebrae", np.array([-5, 1]), "expected one integer 0..24"),
        ("vertebrae", np.array([3.7, 1]), "expected one integer 0..24"),
        ("masks", np.array(7), "shape () does not match images (2, 4, 4)"),
        ("tissue", np.zeros((2, 2, 4, 4), np.uint8), "shape (2, 2, 4, 4) does not match images"),
    ],
)
def test_bad_npy_side_arrays_name_the_file_and_what_is_allowed(tmp_path: Path, part: str, array: np.ndarray,
                                                              message: str) -> None:
    np.save(tmp_path / "images.npy", np.zeros((2, 4, 4), np.uint8))
    np.save(tmp_path / "masks.npy", np.ones((2, 4, 4), bool))
    np.save(tmp_path / f"{part}.npy", array)
    with pytest.raises(InputError) as err:
        read_slices(tmp_path, require_masks=True)
    assert str(err.value).startswith(str(tmp_path / f"{part}.npy")) and message in str(err.value)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((4, 4)), "expected an array"),
        (np.full((2, 4, 4), np.nan), "NaN"),
        (np.full((2, 4, 4), 2.0), "must lie in"),
        (np.zeros((2, 4, 4), np.int32), "expected uint8 or float"),
        (np.zeros((0, 4, 4), np.float32), "the dataset is empty"),
    ],
)
def test_bad_npy_input(tmp_path: Path, array: np.ndarray, message: str) -> None:
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(InputError, match=message):
        read_slices(tmp_path / "x.npy")


def _truncated(path: Path) -> None:
    np.save(path, np.zeros((4, 16, 16), np.uint8))
    path.write_bytes(path.read_bytes()[:200])


def _npz(path: Path) -> None:
    with path.open("wb") as f:
        np.savez(f, images=np.zeros((2, 4, 4), np.uint8))


@pytest.mark.parametrize(
    "write, message",
    [
        (lambda p: p.write_text("not numpy"), r"not a \.npy file \(no NumPy header\)"),
        (_npz, r"zip archive \(\.npz\?\)"),
        (lambda p: np.save(p, np.array([{"a": 1}], dtype=object)), "Object arrays cannot be loaded"),
        (_truncated, "unreadable .npy file"),
    ],
)
@pytest.mark.parametrize("where", ["images.npy", "masks.npy", "vertebrae.npy"])
def test_a_broken_npy_file_is_one_line_naming_it(tmp_path: Path, write, message: str, where: str) -> None:
    folder = tmp_path / "stack"
    folder.mkdir()
    np.save(folder / "images.npy", np.zeros((2, 4, 4), np.uint8))
    write(folder / where)
    with pytest.raises(InputError, match=message) as err:
        read_slices(folder)
    assert str(err.value).startswith(str(folder / where)) and "\n" not in str(err.value)


def test_missing_empty_and_unknown_folders(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        detect_layout(tmp_path / "nope")
    with pytest.raises(InputError, match="not a dataset"):
        detect_layout(tmp_path)
    (tmp_path / "scan.nii.gz").write_bytes(b"")  # one volume: a folder of them is the dataset
    with pytest.raises(InputError, match="scan.nii.gz: not a dataset .*folder of NIfTI volumes; put this volume in a folder"):
        detect_layout(tmp_path / "scan.nii.gz")
    (tmp_path / "scan.nii.gz").unlink()
    (tmp_path / "slice.dcm").write_bytes(b"")
    with pytest.raises(InputError, match="slice.dcm: not a dataset .*fills a DICOM series, read from the folder of its files"):
        detect_layout(tmp_path / "slice.dcm")
    (tmp_path / "slice.dcm").unlink()
    (tmp_path / "ct").mkdir()
    with pytest.raises(InputError, match="the folder is empty"):
        read_slices(tmp_path)


def test_split_keeps_patients_whole_and_uses_450_to_499_for_validation() -> None:
    ids = [f"{p:03d}_{k}" for p in (1, 2, 449, 450, 499) for k in range(3)]
    train, val = split_by_patient(ids)
    assert sorted({ids[i][:3] for i in val}) == ["450", "499"]
    assert sorted({ids[i][:3] for i in train}) == ["001", "002", "449"]
    ids = [f"{p:03d}_{k}" for p in range(20) for k in range(3)]
    train, val = split_by_patient(ids, val_fraction=0.2)
    train_p, val_p = {ids[i][:3] for i in train}, {ids[i][:3] for i in val}
    assert len(val_p) == 4 and not train_p & val_p and len(train) + len(val) == len(ids)


def test_only_dmiai_ids_fall_into_the_fixed_validation_patients() -> None:
    from medinpaint.data.split import outside_validation

    stack = [str(i) for i in range(600)]  # a .npy stack's slice numbers: 600 patients of one slice, none DM-i-AI
    train, val = split_by_patient(stack, val_fraction=0.1)
    assert len(val) == 60 and not set(range(450, 500)) <= set(val.tolist())  # a seeded tenth, not slices 450-499
    assert len(outside_validation(stack)) == 600
    pngs = [f"{i:04d}" for i in range(440, 460)]  # PNG pairs `0440.png`..`0459.png`
    assert len(outside_validation(pngs)) == 20 and len(split_by_patient(pngs)[1]) == 2
    assert outside_validation(["449_9", "450_0", "499_3", "500_0"]).tolist() == [0, 3]


def test_named_patients_keep_their_slices_together() -> None:
    from medinpaint.data import patient_of

    assert [patient_of(i) for i in ("001_2", "sub01_3", "mni152_40", "case:z0003", "pt_7_2")] == ["001", "sub01", "mni152", "case", "pt_7"]
    assert [patient_of(i) for i in ("17", "synth-000003", "scan")] == ["17", "synth-000003", "scan"]  # each its own
    ids = [f"sub{p:02d}_{k}" for p in range(20) for k in range(5)]  # a PATIENT_K data set that is not DM-i-AI
    train, val = split_by_patient(ids, val_fraction=0.2)
    train_p, val_p = {patient_of(ids[i]) for i in train}, {patient_of(ids[i]) for i in val}
    assert len(val_p) == 4 and not train_p & val_p  # slices of one subject fell on both sides


def test_packed_cache_round_trips_in_shards_under_the_limit(phantom_dataset: Path, tmp_path: Path) -> None:
    s = read_slices(phantom_dataset)
    shards = pack(s, tmp_path / "cache", max_shard_bytes=3 * 64 * 64 * 5)
    assert len(shards) == 6  # 24 cases of 3 planes + 64 bytes of slack: 4 per shard
    assert all(p.stat().st_size <= 3 * 64 * 64 * 5 for p in shards)
    back = read_slices(tmp_path / "cache")
    assert back.ids == s.ids
    assert np.array_equal(back.images, s.images) and np.array_equal(back.truth, s.truth)
    assert np.array_equal(back.masks, s.masks)
    assert np.array_equal(back.tissue, s.tissue) and np.array_equal(back.vertebrae, s.vertebrae)


def test_label_maps_count_towards_the_shard_limit(phantom_dataset: Path, tmp_path: Path) -> None:
    """Uncompressed, what a shard holds stays under the limit, whatever the compression achieves."""
    s = read_slices(phantom_dataset)
    s.labels, s.masks = (s.tissue > 0).astype(np.uint8), None  # clean slices, tissue and labels: three whole planes
    limit = 3 * 64 * 64 * 5
    shards = pack(s, tmp_path / "cache", max_shard_bytes=limit)
    for shard in shards:
        with np.load(shard) as held:
            assert sum(held[k].nbytes for k in held.files if k != "ids") <= limit
    assert np.array_equal(read_slices(tmp_path / "cache").labels, s.labels)


@pytest.mark.parametrize("damage, what", [
    (lambda c: (c / INDEX).write_text("{not json"), "JSONDecodeError"),
    (lambda c: (c / INDEX).write_text("{}"), "KeyError"),
    (lambda c: [f.write_bytes(f.read_bytes()[:1000]) for f in c.glob("*.npz")], "BadZipFile"),  # a cut copy
])
def test_a_damaged_packed_cache_is_one_line_naming_it(phantom_dataset: Path, tmp_path: Path, damage, what: str) -> None:
    cache = tmp_path / "cache"
    pack(read_slices(phantom_dataset), cache)
    damage(cache)
    with pytest.raises(InputError, match=f"a damaged packed cache \\({what}") as err:
        read_slices(cache)
    assert str(err.value).startswith(f"{cache}: ") and "medinpaint pack" in str(err.value)
