"""Micro-batching: requests that arrive together share one forward pass, run off the event loop.

On a CPU, one batched forward of N slices is cheaper than N forwards fighting over the same cores, and a single
inference thread keeps torch's own threads from oversubscribing them. Jobs queue while the model is busy and the
next pass takes all of them (up to `max_batch`), so batching costs an idle server at most `max_wait_ms`.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from medinpaint.inference import Inpainter


@dataclass
class Job:
    """One slice to fill. `tissue`/`vertebrae` None = unknown to the model."""

    image: np.ndarray
    mask: np.ndarray
    tissue: np.ndarray | None = None
    vertebrae: int | None = None
    batch: int = 0  # how many slices shared its forward pass, for the logs
    done: asyncio.Future[np.ndarray] = field(default=None)  # type: ignore[assignment]

    @property
    def signature(self) -> tuple[bool, bool]:
        """Jobs can share a forward pass only if they carry the same side information."""
        return self.tissue is None, self.vertebrae is None


class MicroBatcher:
    def __init__(self, inpainter: Inpainter, max_batch: int = 8, max_wait_ms: float = 10.0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.inpainter = inpainter
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self._queue: asyncio.Queue[Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medinpaint-inference")
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._serve(), name="medinpaint-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self._queue = self._task = self._executor = None

    async def fill(self, jobs: list[Job]) -> list[np.ndarray]:
        """Queue `jobs` and wait for their filled slices (uint8, known pixels unchanged)."""
        if self._queue is None:
            raise RuntimeError("the batcher is not started (the app's lifespan did not run)")
        loop = asyncio.get_running_loop()
        for job in jobs:
            job.done = loop.create_future()
            self._queue.put_nowait(job)
        return list(await asyncio.gather(*(job.done for job in jobs)))

    async def _serve(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._gather(self._queue)
            try:
                outputs = await loop.run_in_executor(self._executor, self._infer, jobs)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for job in jobs:
                    if not job.done.done():
                        job.done.set_exception(exc)
                continue
            for job, out in zip(jobs, outputs):
                if not job.done.done():  # a client that went away cancels its future
                    job.done.set_result(out)

    async def _gather(self, queue: asyncio.Queue[Job]) -> list[Job]:
        """The first job, then whatever else is queued or arrives within `max_wait`, up to `max_batch`."""
        jobs = [await queue.get()]
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while len(jobs) < self.max_batch:
            if not queue.empty():
                jobs.append(queue.get_nowait())
                continue
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            try:
                jobs.append(await asyncio.wait_for(queue.get(), left))
            except TimeoutError:
                break
        return jobs

    def _infer(self, jobs: list[Job]) -> list[np.ndarray]:
        """Runs on the inference thread: one predict_batch per kind of side information."""
        outputs: list[np.ndarray | None] = [None] * len(jobs)
        groups: dict[tuple[bool, bool], list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault(job.signature, []).append(i)
        for (no_tissue, no_verts), idx in groups.items():
            group = [jobs[i] for i in idx]
            filled = self.inpainter.predict_batch(
                np.stack([j.image for j in group]),
                np.stack([j.mask for j in group]),
                None if no_tissue else np.stack([j.tissue for j in group]),
                None if no_verts else np.array([j.vertebrae for j in group]),
                batch_size=len(group),
            )
            for i, out in zip(idx, filled):
                jobs[i].batch = len(group)
                outputs[i] = out
        return outputs  # type: ignore[return-value]
