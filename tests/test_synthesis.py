"""Synthesis: sampler maths against closed-form denoisers, tiny models trained and sampled, outputs on disk."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from medinpaint.checkpoint import read_metadata, shipped_weights_dir
from medinpaint.data import read_slices
from medinpaint.data.slices import SliceSet
from medinpaint.errors import InputError
from medinpaint.synthesis import load_generator
from medinpaint.synthesis.data import quantise_tissue, resize_pairs
from medinpaint.synthesis.diffusion import Diffusion
from medinpaint.synthesis.features import frechet_distance, precision_recall
from medinpaint.synthesis.memorisation import nearest_training
from medinpaint.synthesis.registry import network_config
from medinpaint.synthesis.task import SynthTrainConfig, train_generator
from medinpaint.synthesis.writers import write_dmiai, write_npy

from conftest import write_dmiai as write_phantoms


def tiny(family: str, **kw) -> SynthTrainConfig:
    network = network_config(family, 64, base_channels=8, blocks=1).to_dict()
    return SynthTrainConfig(**{"family": family, "size": 64, "steps": 3, "batch_size": 4, "log_every": 1, "warmup_steps": 2,
                               "network": network, **kw})


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> SliceSet:
    """Ten training patients and two validation patients (450, 451), two 64x64 slices each."""
    return read_slices(write_phantoms(tmp_path_factory.mktemp("synth") / "phantoms", [*range(10), 450, 451]))


@pytest.fixture(scope="module")
def checkpoints(phantoms: SliceSet, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {m: train_generator(phantoms, root / m, tiny(m), device="cpu", progress=False) for m in ("diffusion", "vae")}


# --- sampler maths: with an exact denoiser, the samplers must give the data distribution back ---------------------


def oracle_for_gaussian(diffusion: Diffusion, mean: float, std: float):
    """The exact v-prediction for data ~ N(mean, std^2) per pixel."""

    def net(x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        a = diffusion.alpha_bar[(t * diffusion.timesteps).round().long()].float().view(-1, 1, 1, 1)
        sa, sb = a.sqrt(), (1 - a).sqrt()
        x0 = mean + sa * std**2 * (x - sa * mean) / (a * std**2 + sb**2)  # E[x0 | x_t]
        return (sa * x - x0) / sb

    return net


@pytest.mark.parametrize("eta", [0.0, 1.0])  # DDIM, DDPM
def test_samplers_reproduce_a_known_distribution(eta: float) -> None:
    diffusion = Diffusion()
    net = oracle_for_gaussian(diffusion, mean=0.2, std=0.3)
    spread = []
    for steps in (10, 25, 1000):
        x = diffusion.sample(net, torch.zeros(64, dtype=torch.long), (64, 1, 16, 16), torch.Generator().manual_seed(0), steps=steps, eta=eta)
        assert abs(float(x.mean()) - 0.2) < 0.01
        spread.append(float(x.std()))
    assert abs(spread[-1] - 0.3) < 0.01  # exact over the whole chain
    assert spread[0] < spread[1] < spread[2] and spread[1] > 0.25  # fewer steps shrink the spread a little


def test_dpm_solver_in_ten_steps_keeps_the_spread_ddim_loses() -> None:
    """The exact-denoiser oracle of the other samplers: at 10 steps DPM-Solver++(2M) gives the data's mean and a
    spread nearer the truth than DDIM's at 10 steps."""
    diffusion = Diffusion()
    net = oracle_for_gaussian(diffusion, mean=0.2, std=0.3)
    draw = lambda solver, steps: diffusion.sample(net, torch.zeros(64, dtype=torch.long), (64, 1, 16, 16),  # noqa: E731
                                                  torch.Generator().manual_seed(0), steps=steps, solver=solver)
    dpm, ddim = draw("dpm++", 10), draw("ddim", 10)
    assert abs(float(dpm.mean()) - 0.2) < 0.01
    assert abs(float(dpm.std()) - 0.3) < abs(float(ddim.std()) - 0.3) and abs(float(dpm.std()) - 0.3) < 0.01
    point = diffusion.sample(oracle_for_gaussian(diffusion, 0.5, 0.0), torch.zeros(4, dtype=torch.long), (4, 1, 8, 8),
                             torch.Generator().manual_seed(0), steps=5, solver="dpm++")
    assert torch.allclose(point, torch.full_like(point, 0.5), atol=1e-4)
    with pytest.raises(ValueError, match="eta 0"):
        diffusion.sample(net, torch.zeros(1, dtype=torch.long), (1, 1, 4, 4), torch.Generator(), solver="dpm++", eta=1.0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy's copy keyword, inside diffusers
def test_dpm_solver_matches_diffusers_step_for_step() -> None:
    """The same start noise, times and exact denoiser through diffusers' DPMSolverMultistepScheduler."""
    schedulers = pytest.importorskip("diffusers.schedulers")
    diffusion = Diffusion()
    net = oracle_for_gaussian(diffusion, mean=0.1, std=0.2)  # x0 predictions stay inside [-1, 1]: no clamping
    a = diffusion.alpha_bar
    betas = (1 - a / torch.cat([a.new_ones(1), a[:-1]])).numpy()
    reference = schedulers.DPMSolverMultistepScheduler(
        num_train_timesteps=diffusion.timesteps, trained_betas=betas, prediction_type="v_prediction",
        algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint", lower_order_final=True,
        final_sigmas_type="sigma_min")
    times = diffusion.step_times(8, "logsnr")
    reference.set_timesteps(timesteps=times[:-1])  # its last step lands on t = 0, where ours makes its last call
    x = torch.randn((8, 1, 8, 8), generator=torch.Generator().manual_seed(3))
    for t in reference.timesteps:
        x = reference.step(net(x, torch.full((8,), int(t) / diffusion.timesteps), None), t, x).prev_sample
    sa, sb = float(a[0]) ** 0.5, float(1 - a[0]) ** 0.5
    x = sa * x - sb * net(x, torch.zeros(8), None)  # the x0 prediction at t = 0
    ours = diffusion.sample(net, torch.zeros(8, dtype=torch.long), (8, 1, 8, 8), torch.Generator().manual_seed(3), steps=8,
                            solver="dpm++")
    assert torch.allclose(ours, x, atol=1e-4)


@pytest.mark.parametrize(("solver", "eta"), [("ddim", 0.0), ("ddim", 1.0), ("dpm++", 0.0)])
def test_known_pixels_are_held_at_their_forward_noised_values(solver: str, eta: float) -> None:
    """Whatever the denoiser answers, every x_t it is called with has sqrt(a_t) x0 + sqrt(1 - a_t) eps at the kept
    pixels (eps the starting noise), the distribution training showed it there; the other pixels move freely."""
    diffusion, shape = Diffusion(), (2, 1, 8, 8)
    x0 = torch.rand(shape) * 2 - 1
    keep = torch.zeros(shape)
    keep[..., :4, :] = 1
    seen, garbage = [], torch.Generator().manual_seed(9)

    def net(x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        seen.append((x.clone(), int(round(float(t[0]) * diffusion.timesteps))))
        return torch.randn(x.shape, generator=garbage) * 3

    diffusion.sample(net, torch.zeros(2, dtype=torch.long), shape, torch.Generator().manual_seed(0), steps=6,
                     eta=eta, solver=solver, known=(x0, keep))
    start = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    assert len(seen) == len(diffusion.step_times(6, "logsnr" if solver == "dpm++" else "linear"))
    for x, t in seen:
        a = diffusion.alpha_bar[t].float()
        assert torch.allclose(x[keep == 1], (a.sqrt() * x0 + (1 - a).sqrt() * start)[keep == 1], atol=1e-5)
    assert not torch.allclose(seen[-1][0][keep == 0], start[keep == 0], atol=0.1)


def test_shared_noise_makes_a_sample_independent_of_its_batch() -> None:
    diffusion = Diffusion()
    net = oracle_for_gaussian(diffusion, mean=0.2, std=0.3)
    draw = lambda n: diffusion.sample(net, torch.zeros(n, dtype=torch.long), (n, 1, 8, 8),  # noqa: E731
                                      torch.Generator().manual_seed(4), steps=5, eta=1.0, shared_noise=True)
    one, three = draw(1), draw(3)
    assert torch.allclose(three, one.expand_as(three), atol=1e-6)
    assert not torch.allclose(draw(3), diffusion.sample(net, torch.zeros(3, dtype=torch.long), (3, 1, 8, 8),
                                                        torch.Generator().manual_seed(4), steps=5, eta=1.0), atol=0.1)


def test_a_point_distribution_comes_back_exactly_and_temperature_narrows_the_spread() -> None:
    diffusion = Diffusion()
    point = oracle_for_gaussian(diffusion, mean=0.5, std=0.0)
    x = diffusion.sample(point, torch.zeros(4, dtype=torch.long), (4, 2, 8, 8), torch.Generator().manual_seed(0), steps=10, eta=1.0)
    assert torch.allclose(x, torch.full_like(x, 0.5), atol=1e-4)
    net = oracle_for_gaussian(diffusion, mean=0.0, std=0.3)
    cool = diffusion.sample(net, torch.zeros(64, dtype=torch.long), (64, 1, 16, 16), torch.Generator().manual_seed(0), steps=25, temperature=0.5)
    assert 0.12 < float(cool.std()) < 0.18


def test_step_times_run_from_the_last_step_to_zero() -> None:
    d = Diffusion()
    assert d.step_times(1) == [999]
    times = d.step_times(25)
    assert len(times) == 25 and times[0] == 999 and times[-1] == 0 and times == sorted(times, reverse=True)
    assert d.step_times(1000) == list(range(999, -1, -1))
    snr = d.step_times(10, "logsnr")
    assert len(snr) == 10 and snr[-1] == 0 and 990 < snr[0] < 999  # from log-SNR -5.1, not from pure noise
    assert 0.99 < float(d.alpha_bar[0]) < 1 and float(d.alpha_bar[-1]) < 1e-4


def test_guidance_extrapolates_from_unconditional_to_conditional() -> None:
    d = Diffusion()
    seen = []

    def net(x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        seen.append(labels.tolist())
        return (labels == 25).float().view(-1, 1, 1, 1).expand_as(x)  # v = 1 unconditionally, 0 given a level

    v = d._predict(net, torch.zeros(2, 1, 4, 4), 500, torch.tensor([3, 7]), guidance=3.0, null_class=25)
    assert seen == [[3, 7, 25, 25]]
    assert torch.allclose(v, torch.full_like(v, 1 + 3.0 * (0 - 1)))  # uncond 1, cond 0


# --- data -------------------------------------------------------------------------------------------------------


def test_a_weighted_diffusion_loss_counts_only_the_weighted_pixels() -> None:
    """The inpainting objective: what the denoiser says outside the mask changes nothing, and inside it the loss is
    the plain MSE over those pixels."""
    d, x0 = Diffusion(), torch.rand(2, 1, 8, 8) * 2 - 1
    weight = torch.zeros(2, 1, 8, 8)
    weight[..., 2:5, 3:7] = 1
    inside = lambda x, t, labels: torch.zeros_like(x)  # noqa: E731
    outside = lambda x, t, labels: 5 * (1 - weight)  # noqa: E731 - wrong only where the weight is 0
    loss = d.loss(inside, x0, torch.zeros(2, dtype=torch.long), torch.Generator().manual_seed(3), weight)
    same = d.loss(outside, x0, torch.zeros(2, dtype=torch.long), torch.Generator().manual_seed(3), weight)
    assert torch.allclose(loss, same)
    gen = torch.Generator().manual_seed(3)  # the loss's own draws, redone: v = sqrt(a) noise - sqrt(1 - a) x0
    t = torch.randint(d.timesteps, (2,), generator=gen)
    noise = torch.randn(x0.shape, generator=gen)
    a = d.alpha_bar[t].float().view(-1, 1, 1, 1)
    v = a.sqrt() * noise - (1 - a).sqrt() * x0
    assert torch.allclose(loss, (v**2)[weight.bool()].mean())


def test_resize_pairs_averages_ct_and_votes_tissue() -> None:
    ct = np.zeros((1, 4, 4), np.uint8)
    ct[0, :2, :2] = [[0, 40], [80, 120]]
    tissue = np.zeros((1, 4, 4), np.uint8)
    tissue[0, :2, :2] = [[255, 255], [255, 100]]
    pairs = resize_pairs(SliceSet(["0_0"], ct, tissue=tissue, vertebrae=np.array([3], np.int16)), 2)
    assert pairs.shape == (1, 2, 2, 2) and pairs.dtype == np.uint8
    assert pairs[0, 0, 0, 0] == 60 and pairs[0, 1, 0, 0] == 255 and pairs[0, 1, 1, 1] == 0
    with pytest.raises(InputError, match="too small"):
        resize_pairs(SliceSet(["0_0"], ct, tissue=tissue, vertebrae=np.array([3], np.int16)), 8)


def test_tissue_levels_are_quantised_to_the_nearest_of_three() -> None:
    levels = np.array([0.0, 0.19, 0.2, 0.39, 0.69, 0.7, 1.0])
    assert quantise_tissue(levels).tolist() == [0, 0, 100, 100, 100, 255, 255]


# --- training ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["diffusion", "vae"])
def test_tiny_models_train_and_sample_triples(model: str, checkpoints: dict[str, Path]) -> None:
    meta = read_metadata(checkpoints[model])
    assert meta.kind == f"synth-{model}" and meta.training.steps == 3 and meta.preprocessing.size == 64
    assert sum(meta.training.vertebra_counts) == 20  # the 10 training patients x 2; 450 and 451 never seen
    gen = load_generator(checkpoints[model])
    kw = {"steps": 2} if model == "diffusion" else {}
    images, tissue, vertebrae = gen.sample(5, seed=0, batch_size=2, **kw)
    assert images.shape == (5, 1, 64, 64) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 1 and images.std() > 0
    assert tissue.shape == (5, 64, 64) and tissue.dtype == np.uint8 and set(np.unique(tissue)) <= {0, 100, 255}
    assert vertebrae.dtype == np.int16 and vertebrae.shape == (5,)
    counts = np.asarray(meta.training.vertebra_counts)
    assert all(counts[v] > 0 for v in vertebrae)  # levels are drawn from those seen in training


def test_training_resumes_and_refuses_another_model(phantoms: SliceSet, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train_generator(phantoms, run, tiny("vae", steps=2), device="cpu", progress=False)
    train_generator(phantoms, run, tiny("vae", steps=4), device="cpu", progress=False)
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 4
    with open(run / "log.csv", newline="") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4]
    with pytest.raises(InputError, match="another network, config or data size"):
        train_generator(phantoms, run, tiny("diffusion", steps=5), device="cpu", progress=False)


@pytest.mark.slow
def test_vae_loss_goes_down(phantoms: SliceSet, tmp_path: Path) -> None:
    train_generator(phantoms, tmp_path / "run", tiny("vae", steps=40, batch_size=8), device="cpu", progress=False)
    with open(tmp_path / "run" / "log.csv", newline="") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_bf16_export_halves_the_weights_and_still_samples(phantoms: SliceSet, tmp_path: Path) -> None:
    path = train_generator(phantoms, tmp_path / "run", tiny("vae", steps=1, weights_dtype="bfloat16"), device="cpu", progress=False)
    full = train_generator(phantoms, tmp_path / "run32", tiny("vae", steps=1), device="cpu", progress=False)
    assert path.stat().st_size < 0.6 * full.stat().st_size
    assert load_generator(path).sample(2).images.shape == (2, 1, 64, 64)


def test_training_needs_tissue_and_vertebrae(phantoms: SliceSet, tmp_path: Path) -> None:
    bare = SliceSet(phantoms.ids, phantoms.images)
    with pytest.raises(InputError, match="needs tissue maps and vertebra levels"):
        train_generator(bare, tmp_path / "run", tiny("vae"), device="cpu", progress=False)


# --- sampling ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpm++"])
def test_fixed_seed_gives_the_same_samples(sampler: str, checkpoints: dict[str, Path]) -> None:
    gen = load_generator(checkpoints["diffusion"])
    a = gen.sample(3, seed=7, steps=3, sampler=sampler)
    b = gen.sample(3, seed=7, steps=3, sampler=sampler)
    c = gen.sample(3, seed=8, steps=3, sampler=sampler)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.tissue, b.tissue)
    assert not np.array_equal(a.images, c.images)


@pytest.mark.parametrize(("model", "sampler"), [("vae", None), ("diffusion", "ddim"), ("diffusion", "ddpm")])
def test_samples_do_not_depend_on_the_batch_size_or_on_n(model: str, sampler: str | None, checkpoints: dict[str, Path]) -> None:
    gen = load_generator(checkpoints[model])
    kw = {"steps": 3, "sampler": sampler} if sampler else {}
    five = gen.sample(5, seed=4, batch_size=5, **kw)
    for other in (gen.sample(5, seed=4, batch_size=2, **kw), gen.sample(5, seed=4, batch_size=1, **kw)):
        np.testing.assert_allclose(other.images, five.images, atol=1e-5)  # a batch's kernels may round otherwise
        assert np.mean(other.tissue == five.tissue) > 0.999 and np.array_equal(other.vertebrae, five.vertebrae)
    first = gen.sample(3, seed=4, batch_size=3, **kw)
    np.testing.assert_allclose(first.images, five.images[:3], atol=1e-5)
    assert np.array_equal(first.vertebrae, five.vertebrae[:3])
    assert not np.allclose(five.images[0], five.images[1], atol=1e-3)  # each sample has noise of its own


def test_stream_yields_chunks_that_make_up_sample(checkpoints: dict[str, Path]) -> None:
    gen = load_generator(checkpoints["vae"])
    chunks = list(gen.stream(10, seed=1, batch_size=4))
    assert [len(c.images) for c in chunks] == [4, 4, 2]
    whole = gen.sample(10, seed=1, batch_size=4)
    assert np.array_equal(np.concatenate([c.images for c in chunks]), whole.images)
    assert np.array_equal(np.concatenate([c.vertebrae for c in chunks]), whole.vertebrae)


def test_vertebra_levels_can_be_chosen(checkpoints: dict[str, Path]) -> None:
    gen = load_generator(checkpoints["vae"])
    assert gen.sample(3, vertebrae=12).vertebrae.tolist() == [12, 12, 12]
    assert gen.sample(3, vertebrae=[0, 5, 24]).vertebrae.tolist() == [0, 5, 24]
    with pytest.raises(InputError, match="0..24"):
        gen.sample(2, vertebrae=25)
    with pytest.raises(InputError, match="one per sample"):
        gen.sample(3, vertebrae=[1, 2])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"n": 0}, "must be positive, got 0"),
        ({"n": 2, "batch_size": 0}, "--batch-size must be positive"),
        ({"n": 2, "temperature": 0.0}, "--temperature must be a positive number"),
        ({"n": 2, "temperature": float("inf")}, "--temperature must be a positive number"),  # gave all-NaN slices
        ({"n": 2, "sampler": "euler"}, "--sampler must be one of ddim, ddpm, dpm++"),
        ({"n": 2, "steps": 1001}, "--steps must be 1..1000"),
        ({"n": 2, "steps": 2.5}, "--steps must be 1..1000"),
        ({"n": 2, "guidance": 0.5}, "--guidance must be a number of at least 1"),
        ({"n": 2, "guidance": float("nan")}, "--guidance must be a number of at least 1"),
    ],
)
def test_bad_sampling_arguments_are_input_errors(kwargs: dict, message: str, checkpoints: dict[str, Path]) -> None:
    with pytest.raises(InputError, match=message):
        load_generator(checkpoints["diffusion"]).stream(**kwargs)


def test_wrong_checkpoints_and_sizes_are_input_errors(checkpoints: dict[str, Path], tiny_checkpoint: Path) -> None:
    with pytest.raises(InputError, match="'inpainting-unet' network"):
        load_generator(tiny_checkpoint)
    with pytest.raises(InputError, match="a 64x64 generator, not 256x256"):
        load_generator(checkpoints["vae"], size=256)
    with pytest.raises(InputError, match="apply to diffusion checkpoints"):
        load_generator(checkpoints["vae"]).sample(2, steps=10)
    shipped = [f"{n}x{n}" for n in (64, 256) if list(shipped_weights_dir().glob(f"synth-*-{n}.safetensors"))]
    with pytest.raises(InputError, match=re.escape(f"no shipped generator for size 128 yet (shipped: {', '.join(shipped) or 'none'})")):
        load_generator(None, size=128)


# --- writing ----------------------------------------------------------------------------------------------------


def test_npy_output_is_written_chunk_by_chunk_to_disk(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    gen = load_generator(checkpoints["vae"])
    expected = gen.sample(7, seed=3, batch_size=3)
    written = []

    def watched():
        for k, chunk in enumerate(gen.stream(7, seed=3, batch_size=3)):
            if k:  # the previous chunk is already in the memory-mapped file on disk, before this one exists
                (partial,) = [p for p in tmp_path.iterdir() if p.name.startswith(".out.npy")]
                on_disk = np.load(partial, mmap_mode="r")
                written.append(np.array_equal(on_disk[3 * (k - 1) : 3 * k], expected.images[3 * (k - 1) : 3 * k]))
            yield chunk

    paths = write_npy(tmp_path / "out.npy", watched(), 7, 64)
    assert written == [True, True]
    assert np.array_equal(np.load(paths["images"]), expected.images) and np.load(paths["images"]).dtype == np.float32
    assert np.array_equal(np.load(paths["tissue"]), expected.tissue)
    assert np.array_equal(np.load(paths["vertebrae"]), expected.vertebrae)
    assert read_slices(paths["images"]).images.shape == (7, 64, 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy", "out.tissue.npy", "out.vertebrae.npy"]


def test_dmiai_output_reads_back_as_a_training_set(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    gen = load_generator(checkpoints["diffusion"])
    expected = gen.sample(4, seed=2, steps=2, batch_size=3)
    write_dmiai(tmp_path / "synth", gen.stream(4, seed=2, steps=2, batch_size=3), 4)
    back = read_slices(tmp_path / "synth")
    assert back.ids == ["synth-000000", "synth-000001", "synth-000002", "synth-000003"] and back.masks is None
    assert np.abs(back.images.astype(int) - np.rint(expected.images[:, 0] * 255)).max() == 0
    assert np.array_equal(back.tissue, expected.tissue) and np.array_equal(back.vertebrae, expected.vertebrae)
    with pytest.raises(InputError, match="already exists"):
        write_dmiai(tmp_path / "synth", gen.stream(1, steps=1), 1)


# --- measures ---------------------------------------------------------------------------------------------------


def test_frechet_distance_and_precision_recall_on_known_sets() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(500, 4)), rng.normal(size=(500, 4))
    assert frechet_distance(a, b) < 0.1
    assert abs(frechet_distance(a, b + [3, 0, 0, 0]) - 9) < 0.5  # a shift of 3 along one axis
    assert min(precision_recall(a, b)) > 0.9
    precision, recall = precision_recall(a, b * 0.1)  # samples collapsed near the mean: faithful, not diverse
    assert precision > 0.9 and recall < 0.5
    assert precision_recall(a, b + 100) == (0.0, 0.0)


def test_copies_of_training_slices_are_found() -> None:
    rng = np.random.default_rng(0)
    train = rng.uniform(0, 255, size=(50, 64)).astype(np.float32)
    queries = np.concatenate([train[[3, 7]] + 1, rng.uniform(0, 255, size=(8, 64)).astype(np.float32)])
    nn = nearest_training(queries, train)
    assert nn.index[:2].tolist() == [3, 7] and abs(nn.distance[0] - 1) < 1e-4
    assert nn.near_copies.tolist() == [True, True] + [False] * 8
    twice = np.concatenate([train, train[:1]])  # a training slice present twice: its second neighbour is itself
    assert nearest_training(train[:1], twice).near_copies.tolist() == [True]
    assert nearest_training(train[:1], train[:1]).near_copies.tolist() == [True]  # and a training set of one


def test_the_reports_held_out_slices_are_those_every_generator_held_out() -> None:
    """Data without patients 450-499: the report's held-out side is the engine's hold-out, which no seed changes."""
    from medinpaint.data.slices import SliceSet
    from medinpaint.data.split import training_split
    from medinpaint.synthesis.report import RealReference, ReportConfig

    rng = np.random.default_rng(0)
    ids = [f"{p:03d}_{k}" for p in range(10) for k in range(2)]
    slices = SliceSet(ids, rng.integers(0, 255, (20, 32, 32)).astype(np.uint8),
                      tissue=np.full((20, 32, 32), 100, np.uint8), vertebrae=np.full(20, 5))
    real = RealReference(slices, 32, ReportConfig(n=4, progress=False), lambda x: x.reshape(len(x), -1)[:, :8].astype(float))
    assert real.heldout.ids == [ids[i] for i in training_split(ids)[1]]
