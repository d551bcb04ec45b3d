"""`medinpaint info`: the card of a checkpoint, read from the file alone."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import torch
from typer.testing import CliRunner

from medinpaint.cli import app
from medinpaint.inference import INPAINTING_PREPROCESSING, save_inpainter
from medinpaint.model_card import describe, format_card, shipped_checkpoints
from medinpaint.models import MaskAwareUNet

from conftest import TINY


def cli(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["info", *map(str, args)])
    return result.exit_code, result.output


def test_the_card_counts_parameters_hashes_the_file_and_tells_the_provenance(tmp_path: Path) -> None:
    network = MaskAwareUNet(TINY)
    window = replace(INPAINTING_PREPROCESSING, intensity_window=(-150.0, 250.0))
    path = save_inpainter(tmp_path / "tiny.safetensors", network, name="tiny", dtype=torch.float16, preprocessing=window)
    card = describe(path)
    assert card["parameters"] == sum(p.numel() for p in network.state_dict().values())
    assert card["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert card["dtypes"] == ["F16"] and card["kind"] == "inpainting-unet" and card["network"]["base_channels"] == 8
    text = format_card(card)
    assert "window (-150.0, 250.0) HU, pixel size unknown, any size" in text and "trained from scratch" in text
    card["training"]["started_from"] = "ct-unet.safetensors sha256:a6a56d5cbc5e"
    assert "fine-tuned from ct-unet.safetensors sha256:a6a56d5cbc5e" in format_card(card)


def test_info_lists_every_shipped_checkpoint_and_refuses_other_files(tmp_path: Path) -> None:
    code, out = cli("--json")
    assert code == 0, out
    cards = json.loads(out)
    assert [Path(c["file"]).name for c in cards] == [p.name for p in shipped_checkpoints()]
    assert {"ct-unet.safetensors", "ct-segmenter.safetensors"} <= {Path(c["file"]).name for c in cards}
    assert all(c["parameters"] > 100_000 and c["training"]["steps"] > 0 for c in cards)
    code, out = cli()
    assert code == 0 and out.count("sha256 ") == len(cards)
    (tmp_path / "notes.safetensors").write_text("not weights")
    code, out = cli(tmp_path / "notes.safetensors")
    assert code == 2 and len(out.strip().splitlines()) == 1 and "notes.safetensors: not a safetensors checkpoint" in out
