"""Checkpoint metadata: every field written is read back; anything unknown or foreign is a one-line error."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import safe_open, save_file

from medinpaint.checkpoint import FORMAT, CheckpointMeta, Preprocessing, Training, load_checkpoint, read_metadata, save_checkpoint
from medinpaint.errors import InputError
from medinpaint.inference import INPAINTING_KIND, INPAINTING_PREPROCESSING, Inpainter, default_weights
from medinpaint.models import MaskAwareUNet

from conftest import TINY


def write_raw(path: Path, meta: dict) -> Path:
    save_file({"w": torch.zeros(1)}, str(path), metadata={"medinpaint": json.dumps(meta)})
    return path


def test_every_field_round_trips(tmp_path: Path) -> None:
    meta = CheckpointMeta(kind=INPAINTING_KIND, config=TINY.to_dict(),
                          preprocessing=Preprocessing(intensity_window=(-150.0, 250.0), size=64),
                          training=Training(name="run", steps=7, minutes=1.5, slices=20, processes=2, seed=3, vertebra_counts=[1, 2]),
                          schedule={"timesteps": 10})
    path = save_checkpoint(tmp_path / "a.safetensors", MaskAwareUNet(TINY), meta)
    back = read_metadata(path)
    assert back == meta and back.format == FORMAT and back.package_version
    with safe_open(str(path), framework="pt") as f:
        stored = json.loads(f.metadata()["medinpaint"])
    assert stored == json.loads(json.dumps(asdict(meta)))  # written: exactly the dataclass fields, nothing else


@pytest.mark.parametrize("where", ["top", "preprocessing", "training"])
def test_an_unknown_field_is_a_one_line_error(tmp_path: Path, where: str) -> None:
    raw = json.loads(CheckpointMeta(kind=INPAINTING_KIND, config={}).to_json())
    (raw if where == "top" else raw[where])["colour"] = "blue"
    with pytest.raises(InputError, match=r"unknown checkpoint .*field 'colour'"):
        read_metadata(write_raw(tmp_path / "x.safetensors", raw))


def test_a_newer_format_a_foreign_kind_and_other_preprocessing_are_refused(tmp_path: Path) -> None:
    raw = json.loads(CheckpointMeta(kind=INPAINTING_KIND, config={}).to_json())
    with pytest.raises(InputError, match="newer than this medinpaint reads"):
        read_metadata(write_raw(tmp_path / "new.safetensors", {**raw, "format": FORMAT + 1}))
    with pytest.raises(InputError, match="format '2' is not an integer"):
        read_metadata(write_raw(tmp_path / "text.safetensors", {**raw, "format": "2"}))
    with pytest.raises(InputError, match="checkpoint of a 'synth-vae' network, expected 'inpainting-unet'"):
        load_checkpoint(write_raw(tmp_path / "vae.safetensors", {**raw, "kind": "synth-vae"}), INPAINTING_KIND, INPAINTING_PREPROCESSING)
    other = {**raw, "preprocessing": {**raw["preprocessing"], "value_range": [-1, 1]}}
    with pytest.raises(InputError, match="expects preprocessing"):
        load_checkpoint(write_raw(tmp_path / "pm1.safetensors", other), INPAINTING_KIND, INPAINTING_PREPROCESSING)
    with pytest.raises(InputError, match="metadata is not JSON"):
        save_file({"w": torch.zeros(1)}, str(tmp_path / "j.safetensors"), metadata={"medinpaint": "{oops"})
        read_metadata(tmp_path / "j.safetensors")


def test_format_1_checkpoints_are_upgraded_on_reading(tmp_path: Path) -> None:
    legacy = {"kind": "synth-vae", "config": {"size": 64}, "size": 64, "name": "old", "steps": 5, "train_minutes": 0.5,
              "train_slices": 9, "seed": 1, "vertebra_counts": [3, 6]}
    meta = read_metadata(write_raw(tmp_path / "old.safetensors", legacy))
    assert meta.format == 1 and meta.preprocessing.size == 64
    assert meta.training == Training(name="old", steps=5, minutes=0.5, slices=9, seed=1, vertebra_counts=[3, 6])
    with pytest.raises(InputError, match="unknown checkpoint metadata field 'colour'"):
        read_metadata(write_raw(tmp_path / "odd.safetensors", {**legacy, "colour": 1}))


@pytest.mark.skipif(not default_weights().is_file(), reason="the shipped weights are not in this checkout")
def test_the_shipped_checkpoint_loads_with_no_flags() -> None:
    inpainter = Inpainter.from_pretrained()
    meta = inpainter.metadata[0]
    assert meta.kind == INPAINTING_KIND and meta.preprocessing.fixed() == INPAINTING_PREPROCESSING.fixed()


def test_a_checkpoint_gets_ordinary_permissions(tmp_path: Path) -> None:
    import os

    old = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "w.safetensors", MaskAwareUNet(TINY), CheckpointMeta(kind=INPAINTING_KIND, config=TINY.to_dict()))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # safetensors writes a new file of its own: the mode is set after


def tampered(tmp_path: Path, name: str, change) -> Path:
    """The tiny U-Net's checkpoint with its metadata changed by `change(raw dict)` (as a hand edit would)."""
    path = save_checkpoint(tmp_path / f"{name}.safetensors", MaskAwareUNet(TINY),
                           CheckpointMeta(kind=INPAINTING_KIND, config=TINY.to_dict(), preprocessing=INPAINTING_PREPROCESSING))
    with safe_open(str(path), framework="pt") as f:
        tensors, raw = {k: f.get_tensor(k) for k in f.keys()}, json.loads(f.metadata()["medinpaint"])
    raw = change(raw)
    save_file(tensors, str(path), metadata={"medinpaint": raw if isinstance(raw, str) else json.dumps(raw)})
    return path


@pytest.mark.parametrize(("change", "message"), [
    (lambda raw: 5, "malformed checkpoint metadata (a JSON int, not an object)"),
    (lambda raw: None, "malformed checkpoint metadata (a JSON NoneType, not an object)"),
    (lambda raw: {**raw, "format": 0}, "malformed checkpoint metadata (format 0)"),
    (lambda raw: json.dumps(raw).replace('"minutes": 0.0', '"minutes": NaN'), "NaN is not a JSON number"),
    (lambda raw: {**raw, "config": {**raw["config"], "depth": "x"}}, "its network config builds no network (TypeError"),
    (lambda raw: {**raw, "config": {**raw["config"], "depth": 0}}, "its network config builds no network"),
    (lambda raw: {**raw, "preprocessing": {**raw["preprocessing"], "intensity_window": [5]}},
     "intensity_window must be two numbers, low < high, got [5]"),
    (lambda raw: {**raw, "preprocessing": {**raw["preprocessing"], "tissue_levels": [0, 100, 300]}},
     "tissue_levels must be distinct values in 0..255"),
], ids=["int", "null", "format-0", "nan", "depth-text", "depth-0", "window", "tissue-levels"])
def test_a_hand_edited_checkpoint_is_a_one_line_error(tmp_path: Path, change, message: str) -> None:
    path = tampered(tmp_path, "edited", change)
    with pytest.raises(InputError) as err:
        Inpainter.from_pretrained(path, backend="torch")
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value), err.value


def test_an_ensemble_of_members_that_expect_other_data_is_refused(tmp_path: Path) -> None:
    a = tampered(tmp_path, "a", lambda raw: {**raw, "preprocessing": {**raw["preprocessing"], "intensity_window": [-150, 250]}})
    b = tampered(tmp_path, "b", lambda raw: {**raw, "preprocessing": {**raw["preprocessing"], "intensity_window": [-1000, 1000]}})
    for first, second in ((a, b), (b, a)):  # averaged, the first one's window decided: the answer hung on the order
        with pytest.raises(InputError, match=rf"{second.name}: an ensemble's members must expect the same data, but its intensity_window"):
            Inpainter.from_pretrained([first, second], backend="torch")
    assert len(Inpainter.from_pretrained([a, a], backend="torch").members) == 2
