"""Synthetic pathology: mask generators stay in their anatomy and keep their size distribution, painters change only
masked pixels, the simulator stays in soft tissue, and the protocol never trains on a test patient."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from medinpaint.checkpoint import read_metadata
from medinpaint.cli import app
from medinpaint.errors import InputError
from medinpaint.lesions.data import LesionSet, read_lesion_folder, write_lesion_folder
from medinpaint.lesions.masks import AnatomyShapes, Spheres
from medinpaint.lesions.painters import ClassicalPainter, InpaintingPainter, train_lesion_painter
from medinpaint.lesions.protocol import ProtocolConfig, lesion_scores, run_protocol
from medinpaint.lesions.simulate import SimulatedLesions

from conftest import phantom, write_dmiai


def phantom_cases(n: int, seed: int = 0, patients: int | None = None) -> LesionSet:
    """`n` healthy phantom slices (64x64, soft tissue inside a fat rim), `PPP_k` ids over `patients` patients."""
    rng = np.random.default_rng(seed)
    pairs = [phantom(rng) for _ in range(n)]
    anatomy = np.stack([np.select([t == 100, t == 255], [1, 2], 0) for _, t in pairs]).astype(np.uint8)
    per = max(1, n // (patients or n))
    ids = [f"{i // per:03d}_{i % per}" for i in range(n)]
    images = np.stack([c for c, _ in pairs])
    return LesionSet(ids, images, np.zeros(images.shape, dtype=bool), anatomy)


def equivalent_radius(mask: np.ndarray) -> float:
    return float(np.sqrt(mask.sum() / np.pi)) if mask.ndim == 2 else float((mask.sum() * 3 / (4 * np.pi)) ** (1 / 3))


def test_spheres_stay_in_the_body_and_keep_their_size_distribution() -> None:
    rng = np.random.default_rng(0)
    anatomy = np.ones((160, 160), dtype=np.uint8)  # room everywhere but at the edge
    anatomy[:, :6] = 0
    radii = []
    for _ in range(200):
        mask = Spheres(radius=(3.0, 9.0), axis_ratio=(0.7, 1.0))(anatomy, anatomy, rng)
        assert mask.any() and not (mask & (anatomy == 0)).any()
        if not mask[:, :20].any() and not mask[:, -12:].any() and not mask[:12].any() and not mask[-12:].any():
            radii.append(equivalent_radius(mask))
    radii = np.array(radii)
    # an ellipse of radius r and axis ratio q has the area of a disc of radius r * sqrt(q)
    assert radii.min() > 3.0 * np.sqrt(0.7) - 0.6 and radii.max() < 9.0 + 0.6
    expected = np.exp(np.mean(np.log([3.0, 9.0]))) * np.sqrt(0.85)  # geometric mean of the log-uniform radius
    assert abs(np.median(radii) / expected - 1) < 0.15


def test_anatomy_shapes_stay_inside_their_tissue_away_from_its_border_in_2d_and_3d() -> None:
    rng = np.random.default_rng(1)
    cases = phantom_cases(20)
    gen = AnatomyShapes(centre_in=(1,), radius=(2.0, 5.0), margin=1.0)
    for i in range(len(cases)):
        mask = gen(cases.images[i], cases.anatomy[i], rng)
        depth = ndimage.distance_transform_edt(cases.anatomy[i] == 1)
        assert mask.any() and (depth[mask] > 1.0).all()
    volume = np.zeros((24, 40, 40), dtype=np.uint8)
    volume[4:20, 6:34, 6:34] = 2
    volume[8:16, 12:28, 12:28] = 1
    for _ in range(10):
        mask = AnatomyShapes(centre_in=(1,), radius=(2.0, 3.5), margin=1.0)(volume, volume, rng)
        assert mask.ndim == 3 and mask.any() and (volume[mask] == 1).all()


def test_anatomy_shapes_keep_the_size_distribution_where_there_is_room() -> None:
    rng = np.random.default_rng(2)
    anatomy = np.zeros((200, 200), dtype=np.uint8)
    anatomy[10:190, 10:190] = 1
    gen = AnatomyShapes(centre_in=(1,), radius=(3.0, 8.0), axis_ratio=(1.0, 1.0), wobble=0.0, margin=1.0)
    radii = [equivalent_radius(gen(anatomy, anatomy, rng)) for _ in range(150)]
    assert min(radii) > 3.0 - 0.6 and max(radii) < 8.0 + 0.6
    assert abs(np.median(radii) / np.sqrt(3.0 * 8.0) - 1) < 0.12


def test_a_slice_without_the_tissue_gets_an_empty_mask() -> None:
    anatomy = np.full((32, 32), 2, dtype=np.uint8)
    assert not AnatomyShapes(centre_in=(1,))(anatomy, anatomy, np.random.default_rng(0)).any()


def test_junction_shapes_sit_on_the_grey_white_junction_of_the_mni_template() -> None:
    pytest.importorskip("nibabel")
    pytest.importorskip("nilearn")  # the template's package (a test dependency): any other failure is a failure
    from medinpaint.lesions.anatomy import mni152

    image, anatomy = mni152(step=2).axial(50)
    assert set(np.unique(anatomy)) == {0, 1, 2} and image.shape == anatomy.shape
    gen = AnatomyShapes(junction=(1, 2), radius=(1.5, 3.0), margin=0.0)
    rng = np.random.default_rng(3)
    to_grey, to_white = (ndimage.distance_transform_edt(anatomy != k) for k in (1, 2))
    for _ in range(10):
        mask = gen(image, anatomy, rng)
        assert mask.any() and np.isin(anatomy[mask], (1, 2)).all()
        # every lesion reaches across the junction: some of it within a few pixels of both tissues
        assert (np.maximum(to_grey, to_white)[mask] <= 2.5).any()


def test_the_classical_painter_changes_only_masked_pixels_and_darkens_them() -> None:
    cases = phantom_cases(6)
    rng = np.random.default_rng(4)
    masks = np.stack([AnatomyShapes(radius=(3.0, 5.0))(cases.images[i], cases.anatomy[i], rng) for i in range(6)])
    painted = ClassicalPainter(contrast=(-60.0, -40.0))(cases.images, masks, cases.anatomy, rng)
    assert np.array_equal(painted[~masks], cases.images[~masks]) and painted.dtype == np.uint8
    assert painted[masks].astype(float).mean() < cases.images[masks].astype(float).mean() - 20


def test_the_simulator_grows_lesions_in_soft_tissue_and_paints_only_them() -> None:
    cases = phantom_cases(30)
    sick = SimulatedLesions()(cases, np.random.default_rng(5), fraction=0.7)
    has = sick.lesions.reshape(30, -1).any(1)
    assert 10 <= has.sum() <= 30
    assert (cases.anatomy[sick.lesions] == 1).all()
    assert np.array_equal(sick.images[~sick.lesions], cases.images[~sick.lesions])


@pytest.fixture(scope="module")
def lesion_cases() -> LesionSet:
    """12 patients of 4 phantom slices, simulated lesions in most."""
    return SimulatedLesions()(phantom_cases(48, seed=6, patients=12), np.random.default_rng(7), fraction=0.8)


def test_the_inpainting_painter_trains_on_own_lesions_and_changes_only_masked_pixels(lesion_cases: LesionSet, tmp_path: Path) -> None:
    weights = train_lesion_painter(lesion_cases, tmp_path / "painter", steps=3, base_channels=8)
    healthy = phantom_cases(4, seed=8)
    rng = np.random.default_rng(9)
    masks = np.stack([AnatomyShapes(radius=(3.0, 5.0))(healthy.images[i], healthy.anatomy[i], rng) for i in range(4)])
    painted = InpaintingPainter(weights)(healthy.images, masks, healthy.anatomy, rng)
    assert np.array_equal(painted[~masks], healthy.images[~masks]) and not np.array_equal(painted[masks], healthy.images[masks])


def test_lesion_scores_count_dice_coverage_and_false_positives() -> None:
    truth = np.zeros((2, 20, 20), dtype=bool)
    truth[0, 2:6, 2:6] = truth[0, 12:16, 12:16] = True  # two lesions on patient a's slice
    pred = np.zeros_like(truth)
    pred[0, 2:6, 2:6] = True  # one found exactly
    pred[1, 5:7, 5:7] = True  # a false positive on patient b's empty slice
    scores = lesion_scores(pred, truth, ["a", "b"])
    assert scores["coverage"] == 0.5 and scores["false_positives"] == 0.5
    assert scores["dice"] == pytest.approx((2 * 16 / (16 + 32) + 0.0) / 2)


def test_the_protocol_never_trains_on_a_test_patient(lesion_cases: LesionSet, tmp_path: Path) -> None:
    healthy = phantom_cases(28, seed=10, patients=14)  # same patient ids as the lesion cases: test ones must go
    healthy = LesionSet([f"{450 + int(i[:3]) - 12}{i[3:]}" if int(i[:3]) >= 12 else i for i in healthy.ids],  # and 450, 451
                        healthy.images, healthy.lesions, healthy.anatomy)
    cfg = ProtocolConfig(strategies=("spheres", "anatomy", "learned"), painters=("classical", "inpainting"), seeds=2,
                         seg_steps=2, painter_steps=2, mask_steps=2, test_fraction=0.25, base_channels=8, progress=False)
    out = tmp_path / "report"
    rows = run_protocol(lesion_cases, healthy, out, cfg, [])
    arms = ["real"] + [f"{m}+{p}" for m in ("spheres", "anatomy", "learned") for p in ("classical", "inpainting")]
    assert sorted((r["arm"], r["seed"]) for r in rows) == sorted((a, s) for a in arms for s in (0, 1))
    assert all(0 <= r["dice"] <= 1 and 0 <= r["coverage"] <= 1 for r in rows)
    test = set(json.loads((out / "splits.json").read_text())["test_patients"])
    assert len(test) == 3
    trained = [json.loads(f.read_text()) for f in out.rglob("train_ids.json")]
    assert len(trained) == 2 * 7 + 2  # every segmenter run, the lesion painter and the mask generator
    from medinpaint.data.split import is_validation_case, patient_of, training_split

    sources = [i.split("_from_")[1] if i.startswith("synthetic_") else i for ids in trained for i in ids]
    assert all(patient_of(i) not in test and not is_validation_case(i) for i in sources)
    assert "(6 of test patients dropped, 4 of patients 450-499 dropped)" in (out / "results.md").read_text()
    real = json.loads((out / "runs" / "real-s1" / "train_ids.json").read_text())  # what the engine trained on
    train = lesion_cases.of_patients(set(lesion_cases.patients) - test)
    assert real == sorted(train.ids[i] for i in training_split(train.ids)[0]) and len(real) < len(train)
    assert {r["real"] for r in rows if r["arm"] == "real"} == {len(real)}
    for name in ("results.csv", "results.md", "results.png", "examples.png"):
        assert (out / name).stat().st_size > 100


def test_an_interrupted_protocol_keeps_its_finished_runs(lesion_cases: LesionSet, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from medinpaint.lesions.protocol import Protocol

    healthy = phantom_cases(24, seed=10, patients=12)
    cfg = ProtocolConfig(strategies=("spheres",), painters=("classical",), seeds=2, seg_steps=2, test_fraction=0.25,
                         base_channels=8, progress=False)
    calls: list[str] = []
    real_segment = Protocol.segment

    def interrupted(self, extra, name, seed):
        calls.append(name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_segment(self, extra, name, seed)

    monkeypatch.setattr(Protocol, "segment", interrupted)
    out = tmp_path / "report"
    with pytest.raises(KeyboardInterrupt):
        run_protocol(lesion_cases, healthy, out, cfg, [])
    calls.clear()
    monkeypatch.setattr(Protocol, "segment", lambda self, *a: (calls.append(a[1]), real_segment(self, *a))[1])
    rows = run_protocol(lesion_cases, healthy, out, cfg, [])
    assert calls == ["real-s1", "spheres+classical-s1"]  # seed 0's two runs were kept
    assert [(r["arm"], r["seed"]) for r in rows] == [("real", 0), ("spheres+classical", 0), ("real", 1), ("spheres+classical", 1)]
    assert rows[1]["synthetic"] > 0 and (out / "examples.png").stat().st_size > 100  # the kept arm is still drawn


def ok(*args: object) -> str:
    """`medinpaint lesions ARGS...`, which must succeed; its output."""
    result = CliRunner().invoke(app, ["lesions", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result.output


def test_the_cli_runs_simulate_masks_paint_and_protocol_on_folders(tmp_path: Path) -> None:
    source = write_dmiai(tmp_path / "ct", list(range(12)), per_patient=3)
    runner = CliRunner()
    ok("simulate", "--healthy", source, "-o", tmp_path / "bench", "--patients", "6", "--healthy-patients", "6")  # all 12
    lesions, healthy = tmp_path / "bench" / "lesions", tmp_path / "bench" / "healthy"
    assert read_lesion_folder(lesions, require_lesions=True).lesions.any()
    ok("masks", "--cases", healthy, "-o", tmp_path / "masks", "--strategy", "anatomy", "--tissue", "1")
    ok("paint", "--cases", tmp_path / "masks", "-o", tmp_path / "painted")
    before, after = read_lesion_folder(tmp_path / "masks", True), read_lesion_folder(tmp_path / "painted", True)
    assert np.array_equal(after.images[~before.lesions], before.images[~before.lesions])
    out = ok("protocol", "--lesions", lesions, "--healthy", healthy, "-o", tmp_path / "report", "--strategy", "spheres",
             "--painter", "classical", "--seeds", "1", "--seg-steps", "2", "--test-fraction", "0.4", "--no-progress")
    assert "| real |" in out and "| spheres+classical |" in out
    again = runner.invoke(app, ["lesions", "paint", "--cases", str(tmp_path / "masks"), "-o", str(tmp_path / "painted")])
    assert again.exit_code == 2 and "exists" in again.output  # never over a user's files unless asked
    bad = runner.invoke(app, ["lesions", "protocol", "--lesions", str(healthy), "--healthy", str(healthy), "-o", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "healthy: the lesion masks are all empty" in bad.output
    sick = read_lesion_folder(lesions, True).lesions
    ok("masks", "--cases", lesions, "-o", tmp_path / "more", "--strategy", "spheres")  # the lesions there keep their labels
    assert read_lesion_folder(tmp_path / "more", True).lesions[sick].all()
    for args in (["simulate", "--healthy", source, "-o", tmp_path / "few", "--patients", "30"],
                 ["masks", "--cases", healthy, "-o", tmp_path / "m2", "--strategy", "bogus"],
                 ["masks", "--cases", healthy, "-o", tmp_path / "m3", "--radius", "0", "5"],  # was an OverflowError
                 ["simulate", "--healthy", source, "-o", tmp_path / "r", "--radius", "-1", "3"],
                 ["simulate", "--healthy", lesions, "-o", tmp_path / "s2", "--patients", "1", "--healthy-patients", "1"],
                 ["protocol", "--lesions", lesions, "--healthy", lesions, "-o", tmp_path / "p2"],  # lesions unlabelled
                 ["masks", "--cases", healthy, "-o", tmp_path / "m4", "--tissue", "0"],  # outside the body
                 ["protocol", "--lesions", lesions, "--healthy", healthy, "-o", tmp_path / "p3", "--tissue", "0"],
                 ["protocol", "--lesions", lesions, "--healthy", healthy, "-o", tmp_path / "p4", "--synthetic-ratio", "0"]):
        wrong = runner.invoke(app, ["lesions", *map(str, args)])
        assert wrong.exit_code == 2 and wrong.output.startswith("error: ") and wrong.output.count("\n") == 1, wrong.output
    few = runner.invoke(app, ["lesions", "simulate", "--healthy", str(source), "-o", str(tmp_path / "f2"), "--patients", "30"])
    assert "has 12 patients outside the validation split" in few.output and "--patients 30 + --healthy-patients 100" in few.output
    zero = runner.invoke(app, ["lesions", "simulate", "--healthy", str(source), "-o", str(tmp_path / "z"), "--patients", "0"])
    assert zero.exit_code == 2 and not (tmp_path / "z").exists()  # it wrote the folder, then crashed


def test_a_lesion_folder_names_an_anatomy_map_of_another_size_and_refuses_corrupted_slices(tmp_path: Path) -> None:
    from medinpaint.data.png import write_gray_png

    rng = np.random.default_rng(0)
    cases = LesionSet(["001_0", "001_1"], rng.integers(0, 255, (2, 32, 32)).astype(np.uint8), np.zeros((2, 32, 32), bool),
                      np.ones((2, 32, 32), np.uint8), ("background", "tissue"))
    (tmp_path / "f").mkdir()
    write_lesion_folder(tmp_path / "f", cases)
    write_gray_png(tmp_path / "f" / "anatomy" / "001_1.png", np.ones((16, 16), np.uint8))
    with pytest.raises(InputError, match=r"anatomy/001_1.png: a map of 16x16 for a slice of 32x32"):
        read_lesion_folder(tmp_path / "f", require_lesions=False)
    source = write_dmiai(tmp_path / "ct", [0, 1], per_patient=2)
    for f in (source / "ct").iterdir():  # corrupted/ and mask/ left: slices with zeros under their masks
        f.unlink()
    (source / "ct").rmdir()
    with pytest.raises(InputError, match="masks but no clean version"):
        read_lesion_folder(source, require_lesions=False)


def test_the_cli_trains_both_learned_parts_and_uses_them(tmp_path: Path) -> None:
    source = write_dmiai(tmp_path / "ct", list(range(8)), per_patient=3)

    def weights_of(*args: object) -> Path:
        return Path(ok(*args).strip().splitlines()[-1].removeprefix("weights: "))

    ok("simulate", "--healthy", source, "-o", tmp_path / "bench", "--patients", "4", "--healthy-patients", "3")
    lesions, healthy = tmp_path / "bench" / "lesions", tmp_path / "bench" / "healthy"
    mask_weights = weights_of("train-masks", "--lesions", lesions, "-o", tmp_path / "maskgen", "--steps", "3",
                              "--device", "cpu", "--no-progress")
    painter_weights = weights_of("train-painter", "--lesions", lesions, "-o", tmp_path / "painter", "--steps", "3",
                                 "--base-channels", "4", "--device", "cpu", "--no-progress")
    assert mask_weights.is_file() and painter_weights.is_file()
    assert read_metadata(painter_weights).config["tissue_classes"] > 0  # the simulated CT lesions keep their tissue map
    ok("masks", "--cases", healthy, "-o", tmp_path / "masks", "--strategy", "learned", "--weights", mask_weights)
    masks = read_lesion_folder(tmp_path / "masks", False)
    assert masks.lesions.any(), "the learned generator placed no lesion"
    ok("paint", "--cases", tmp_path / "masks", "-o", tmp_path / "painted", "--painter", "inpainting",
       "--weights", painter_weights)
    after = read_lesion_folder(tmp_path / "painted", True)
    assert np.array_equal(after.images[~masks.lesions], masks.images[~masks.lesions])
    assert not np.array_equal(after.images[masks.lesions], masks.images[masks.lesions])
    for args in (["masks", "--cases", healthy, "--strategy", "learned", "--weights", mask_weights, "-o", mask_weights.parent],
                 ["paint", "--cases", tmp_path / "masks", "--painter", "inpainting", "--weights", painter_weights,
                  "-o", painter_weights.parent]):  # --overwrite never replaces the folder of the checkpoint in use
        result = CliRunner().invoke(app, ["lesions", *map(str, args), "--overwrite"])
        assert result.exit_code == 2 and "output must not be a folder that holds the input" in result.output, result.output
    assert mask_weights.is_file() and painter_weights.is_file()
    assert read_metadata(mask_weights).sampling["anatomy_names"] == ["background", "soft tissue", "fat"]
    brain = tmp_path / "brain"  # as many classes as CT, other tissue: class 1 is grey matter, not soft tissue
    shutil.copytree(tmp_path / "masks", brain)
    (brain / "anatomy.json").write_text(json.dumps({"classes": ["background", "grey matter", "white matter"]}))
    for args in (["masks", "--cases", brain, "--strategy", "learned", "--weights", mask_weights, "-o", tmp_path / "m5"],
                 ["paint", "--cases", brain, "--painter", "inpainting", "--weights", painter_weights, "-o", tmp_path / "p5"]):
        result = CliRunner().invoke(app, ["lesions", *map(str, args)])
        assert result.exit_code == 2 and "anatomy classes are (background, grey matter, white matter)" in result.output, result.output
        assert result.output.count("\n") == 1 and not args[-1].exists()


def test_a_lesion_folder_round_trips(tmp_path: Path) -> None:
    cases = SimulatedLesions()(phantom_cases(4), np.random.default_rng(11))
    (tmp_path / "f").mkdir()
    write_lesion_folder(tmp_path / "f", cases)
    back = read_lesion_folder(tmp_path / "f", require_lesions=False)
    assert back.ids == cases.ids and np.array_equal(back.images, cases.images)
    assert np.array_equal(back.lesions, cases.lesions) and np.array_equal(back.anatomy, cases.anatomy)
    assert back.anatomy_names == cases.anatomy_names and np.array_equal(back.as_tissue(), cases.as_tissue())
    (tmp_path / "f" / "anatomy.json").unlink()  # a user's folder: classes known by number only
    assert read_lesion_folder(tmp_path / "f", False).anatomy_names[1:] == tuple(f"class_{k}" for k in range(1, int(cases.anatomy.max()) + 1))
    (tmp_path / "f" / "anatomy.json").write_text('{"classes": ["background"]}')
    with pytest.raises(InputError, match="needs a name for each class"):
        read_lesion_folder(tmp_path / "f", False)


def test_train_masks_never_trains_on_patients_450_to_499(lesion_cases: LesionSet, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from medinpaint.lesions import learned

    renamed = [f"{450 + int(i[:3])}{i[3:]}" if int(i[:3]) < 4 else i for i in lesion_cases.ids]  # patients 0-3 -> 450-453
    cases = LesionSet(renamed, lesion_cases.images, lesion_cases.lesions, lesion_cases.anatomy, lesion_cases.anatomy_names)
    (tmp_path / "les").mkdir()
    write_lesion_folder(tmp_path / "les", cases)
    seen: list[int] = []
    monkeypatch.setattr(learned, "train_mask_generator", lambda masks, *a, **k: (seen.append(len(masks)), tmp_path / "w")[1])
    ok("train-masks", "--lesions", tmp_path / "les", "-o", tmp_path / "run", "--steps", "1", "--device", "cpu", "--no-progress")
    assert seen == [sum(not i.startswith("45") for i in renamed)] and seen[0] < len(renamed)
    validation_only = LesionSet([f"{450 + int(i[:3])}{i[3:]}" for i in lesion_cases.ids], lesion_cases.images, lesion_cases.lesions,
                                lesion_cases.anatomy, lesion_cases.anatomy_names)
    (tmp_path / "val").mkdir()
    write_lesion_folder(tmp_path / "val", validation_only)
    result = CliRunner().invoke(app, ["lesions", "train-masks", "--lesions", str(tmp_path / "val"), "-o", str(tmp_path / "r2"),
                                      "--steps", "1", "--device", "cpu"])
    assert result.exit_code == 2 and "no lesions outside the validation patients 450-499" in result.output, result.output
    assert seen == [seen[0]]  # nothing trained


def test_the_protocol_refuses_zero_steps_and_other_anatomy_before_training(lesion_cases: LesionSet, tmp_path: Path) -> None:
    from medinpaint.lesions.protocol import Protocol

    for option in ("seg_steps", "painter_steps", "mask_steps"):
        with pytest.raises(InputError, match=f"--{option.replace('_', '-')} must be at least 1, got 0"):
            ProtocolConfig(**{option: 0})
    brain = LesionSet(lesion_cases.ids, lesion_cases.images, lesion_cases.lesions, lesion_cases.anatomy,
                      ("background", "grey matter", "white matter"))
    with pytest.raises(InputError, match=r"anatomy classes are \(background, soft tissue, fat\), the healthy cases' \(background, grey"):
        Protocol(lesion_cases, brain, ProtocolConfig(progress=False), tmp_path / "work")


@pytest.mark.parametrize(("args", "message"), [
    (["--strategy", "learned", "--weights", "w.safetensors", "--radius", "1", "2"], "--radius does not apply to --strategy learned"),
    (["--strategy", "spheres", "--tissue", "2", "--junction", "1,2"], "--tissue and --junction do not apply to --strategy spheres"),
    (["--strategy", "spheres", "--weights", "w.safetensors"], "--weights does not apply to --strategy spheres"),
    (["--strategy", "anatomy", "--tissue", "2", "--junction", "1,2"], "give --tissue or --junction, not both"),
])
def test_masks_refuses_options_its_strategy_does_not_use(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "cases").mkdir()
    result = CliRunner().invoke(app, ["lesions", "masks", "--cases", str(tmp_path / "cases"), "-o", str(tmp_path / "m"), *args])
    assert result.exit_code == 2 and message in result.output and result.output.count("\n") == 1, result.output


def test_the_protocol_refuses_options_no_strategy_of_it_uses(tmp_path: Path) -> None:
    base = ["lesions", "protocol", "--lesions", str(tmp_path), "--healthy", str(tmp_path), "-o", str(tmp_path / "p")]
    result = CliRunner().invoke(app, [*base, "--strategy", "learned", "--radius", "1", "2"])
    assert result.exit_code == 2 and "--radius does not apply to a protocol of learned masks only" in result.output
    result = CliRunner().invoke(app, [*base, "--strategy", "spheres", "--tissue", "2"])
    assert result.exit_code == 2 and "--tissue does not apply to a protocol without --strategy anatomy" in result.output


def test_masks_refuses_a_class_the_anatomy_does_not_have(lesion_cases: LesionSet, tmp_path: Path) -> None:
    (tmp_path / "cases").mkdir()
    write_lesion_folder(tmp_path / "cases", lesion_cases)
    result = CliRunner().invoke(app, ["lesions", "masks", "--cases", str(tmp_path / "cases"), "-o", str(tmp_path / "m"), "--tissue", "9"])
    assert result.exit_code == 2 and "its anatomy has no class 9 (it has 0 background, 1 soft tissue, 2 fat)" in result.output
    assert not (tmp_path / "m").exists()
