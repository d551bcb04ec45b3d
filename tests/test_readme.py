"""The README's Python blocks run as they are, in order, in one namespace: the documented API cannot drift."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    section = README.read_text().split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_readme_python_blocks_run(capsys) -> None:
    blocks = python_blocks()
    assert len(blocks) == 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    mae = float(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 < mae < 5  # the shipped model on the bundled cases (the demo's figure), not a blank fill
    assert namespace["filled"].shape == namespace["cases"].images.shape and namespace["filled"].dtype == np.uint8
    assert set(np.unique(namespace["tissue"])) <= {0, 100, 255}
    assert namespace["images"].shape == (16, 1, 64, 64) and len(namespace["vertebrae"]) == 16
