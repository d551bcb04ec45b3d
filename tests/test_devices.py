"""Splitting the cores between processes: by the cores this process may run on, never below one thread."""

from __future__ import annotations

import os

import pytest

from medinpaint.devices import threads_per_process


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity on this OS")
def test_the_cores_of_the_affinity_are_shared_out_and_every_process_keeps_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {2, 3, 5, 7})  # 4 of the machine's cores, whatever it has
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert [threads_per_process(n) for n in (1, 2, 3, 4, 8)] == [4, 2, 1, 1, 1]
