"""The one training engine: a family gives a `Task` (network, batches, loss, validation), `fit` does the rest.

    from medinpaint.engine import EngineConfig, Task, fit
    weights = fit(MyTask(...), "runs/mine", EngineConfig(minutes=5), device="cuda")
"""

from medinpaint.engine.config import EngineConfig
from medinpaint.engine.ema import EMA
from medinpaint.engine.loop import fit
from medinpaint.engine.stopping import StoppedEarly
from medinpaint.engine.task import Task

__all__ = ["EMA", "EngineConfig", "StoppedEarly", "Task", "fit"]
