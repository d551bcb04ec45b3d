"""The one training loop every family uses, on accelerate: CPU, one GPU in bf16, or several processes (DDP).

Why accelerate rather than Lightning Fabric: it is already what the GPU machine and the CPU tests run, it gives
DDP under `torchrun`/`accelerate launch`, bf16 autocast and unwrapping in a few calls, and the loop stays plain
Python that reads top to bottom; Fabric would add a dependency for the same four calls.

The budget (steps and/or minutes, in total across resumes) and the cosine schedule live in `EngineConfig`; a
run resumes from `last.pt` with its step count, clock, optimizer, EMA and random states, so that a one-process
run stopped and resumed ends with the weights an uninterrupted one would have (a step cut short is drawn again;
with several processes, the others draw afresh); the EMA network is what is validated and exported. Time counts
training only: validation and checkpoint writing are not charged to the budget.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator

from medinpaint.checkpoint import Training, save_checkpoint
from medinpaint.devices import check_device
from medinpaint.errors import InputError
from medinpaint.engine import runstate
from medinpaint.engine.config import EngineConfig
from medinpaint.engine.ema import EMA
from medinpaint.engine.logs import RunLog
from medinpaint.engine.stopping import StoppedEarly, StopRequest, stop_on_sigterm
from medinpaint.engine.task import Task
from medinpaint.plots import plot_progress


def accelerator(device: str | None) -> Accelerator:
    """CPU in float32, or the GPU(s) in bf16 autocast; `None` picks CUDA when there is one."""
    if device is not None:
        check_device(device)
    cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
    return Accelerator(cpu=cpu, mixed_precision="no" if cpu else "bf16")


def batch_seed(seed: int, process: int, step: int) -> int:
    """The seed of a process's batch generator. A fresh run's is `seed * 1000 + process`, as it always was (so the
    recorded step-budget figures stand); a resumed run restores the saved state instead, and only where there is
    none (another process's, a last.pt saved before states were kept) draws from (seed, process, step), which no
    fresh run of another seed shares."""
    if step == 0:
        return seed * 1000 + process
    return int(np.random.SeedSequence([seed, process, step]).generate_state(1)[0])


def fit(task: Task, output: Path, cfg: EngineConfig, device: str | None = None, progress: bool = True,
        overwrite: bool = False) -> Path:
    """Train `task`'s network into `output/` (log.csv, tensorboard/, progress.png, last.pt, config.json) and
    export the EMA weights as `output/model.safetensors`, whose path is returned. `overwrite` starts afresh.
    A SIGTERM ends the run early the same way, after the step in progress, then raises `StoppedEarly`
    (see `stopping`)."""
    with stop_on_sigterm() as request:
        return _fit(task, output, cfg, device, progress, overwrite, request)


def _fit(task: Task, output: Path, cfg: EngineConfig, device: str | None, progress: bool, overwrite: bool,
         request: StopRequest) -> Path:
    output = Path(output)
    acc = accelerator(device)
    main = acc.is_main_process
    last = output / runstate.LAST
    fresh = overwrite or not last.exists()

    torch.manual_seed(cfg.seed)
    network = task.build_network()
    ema = EMA(network, cfg.ema_decay)
    started_from = ""
    if fresh and cfg.init:  # before the folder is cleared: the weights may lie in it (fine-tuning r/model.safetensors into r)
        runstate.start_from(Path(cfg.init), task.kind, task.network_config, task.preprocessing(), network, ema.network)
        started_from = runstate.origin(cfg.init)  # now, while the file is the one trained from
    acc.wait_for_everyone()
    if main:
        runstate.prepare_folder(output, overwrite)
    acc.wait_for_everyone()
    opt = cfg.make_optimizer(network.parameters())
    critic = task.build_critic()
    critic_opt = None if critic is None else torch.optim.AdamW(critic.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    # a run resumes only with the optimizer whose state it saved (named only when not the default, so runs saved
    # before the choice existed still resume)
    chosen = {} if cfg.optimizer == "adamw" else {"optimizer": cfg.optimizer}
    ident = runstate.identity(task.kind, task.network_config, **task.resume_key(), **chosen)
    settings = {**cfg.to_dict(), "training_slices": task.train_slices,  # saved in last.pt; a resume notes changes
                **({"training_data": task.train_digest} if task.train_digest else {})}
    resumed = runstate.resume(last, ident, type(task.network_config), network, ema.network, opt, say=acc.print,
                              critic=critic, critic_opt=critic_opt)
    step, elapsed = resumed.step, resumed.elapsed_s
    if not fresh:  # what the run started from is its own record, whatever this command says
        started_from = resumed.started_from if resumed.started_from is not None else (runstate.origin(cfg.init) if cfg.init else "")
        if cfg.init:
            acc.print(f"note: --init is not used when a run resumes ({output} goes on from its own last.pt)")
        if "seed" in resumed.config and resumed.config["seed"] != cfg.seed:  # the run's batches, masks and validation set
            raise InputError(f"{output}: a run of seed {resumed.config['seed']}, resumed with --seed {cfg.seed}: give its seed to go "
                             "on with it, or --overwrite (or another --output) for a run of the new seed")
        changed = runstate.changed_settings(resumed.config, settings)
        if changed:
            acc.print(f"note: resuming with other settings than the run had: {'; '.join(changed)}")
    ema.network.to(acc.device)
    if acc.device.type == "cuda":  # fixed shapes: cuDNN's fastest algorithms, TF32 where bf16 autocast does not reach
        network = network.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    network, opt = acc.prepare(network, opt)
    if critic is not None:
        critic, critic_opt = acc.prepare(critic, critic_opt)
        task.critic = critic
    forward = torch.compile(network) if cfg.compile else network
    task.setup(acc.device)
    gen = torch.Generator(device=acc.device).manual_seed(batch_seed(cfg.seed, acc.process_index, step))
    if resumed.rng is not None and main:  # the main process's numbers go on as if never stopped
        if not runstate.restore_random_states(resumed.rng, gen):
            acc.print(f"note: {last} was saved on another kind of device: the batches from step {step} on are drawn afresh")
    if main:
        (output / "config.json").write_text(json.dumps({"kind": task.kind, "engine": cfg.to_dict(), **ident}, indent=1, default=str))
    for note in task.notes:
        acc.print(f"note: {note}")
    log = RunLog(output, task.val_fields, main, progress, cfg.steps, step, task.name)

    def save_state(rng: dict[str, torch.Tensor] | None = None) -> None:
        """`rng`: the random states to resume with (default: as they are now, between two steps)."""
        if main:
            runstate.save(last, ident, acc.unwrap_model(network), ema.network, opt, step, elapsed, settings,
                          None if critic is None else acc.unwrap_model(critic), critic_opt, started_from,
                          rng or runstate.random_states(gen))

    def finished() -> bool:  # this process's view: budget spent, or a SIGTERM asked it to stop
        return not cfg.budget_left(step, elapsed) or request.signal is not None

    def stop() -> bool:
        if acc.num_processes == 1:
            return finished()
        flag = torch.tensor(1.0 if finished() else 0.0, device=acc.device)  # every process stops at the same step
        return acc.reduce(flag, reduction="sum").item() > 0

    shown: dict[str, float] = {}
    window_steps, window_s = 0, 0.0
    last_ckpt = time.monotonic()
    network.train()
    in_step = updating = False  # updating: between the optimizer's step and the step count, a state not to save
    t0 = time.monotonic()  # from here: the step, and the stop check before it (with several processes it waits for them)
    try:
        while not stop():
            rng_before_step, in_step = runstate.random_states(gen), True  # an interrupted step is drawn again on resume
            lr = cfg.lr_at(step, elapsed)
            for group in opt.param_groups:
                group["lr"] = lr
            batch = task.batch(gen, cfg.batch_size)
            with acc.autocast():
                loss = task.loss(forward, batch, gen)
            opt.zero_grad(set_to_none=True)
            acc.backward(loss)
            acc.clip_grad_norm_(network.parameters(), 1.0)
            updating = True
            opt.step()
            if critic is not None:  # one step of the critic against the network's latest output
                for group in critic_opt.param_groups:
                    group["lr"] = lr
                with acc.autocast():
                    critic_loss = task.critic_loss(batch, gen)
                critic_opt.zero_grad(set_to_none=True)
                acc.backward(critic_loss)
                critic_opt.step()
            ema.update(acc.unwrap_model(network), step)
            step += 1
            in_step = updating = False
            validating = bool(task.val_fields) and step % cfg.val_every == 0
            loss_value = loss.item() if step % cfg.log_every == 0 or validating else None  # waits for the GPU
            dt = time.monotonic() - t0
            elapsed += dt
            window_steps, window_s = window_steps + 1, window_s + dt
            at_end = finished()
            if loss_value is not None or at_end:
                values: dict[str, float] = {"step": step, "elapsed_s": elapsed, "lr": lr,
                                            "loss": loss.item() if loss_value is None else loss_value,
                                            "images_per_s": window_steps * cfg.batch_size * acc.num_processes / max(window_s, 1e-9)}
                if at_end and request.signal is not None:
                    save_state()  # before the validation: a scheduler's grace period may not last through it
                if main and task.val_fields and (validating or at_end):
                    values.update(task.validate(ema.network, acc.device))
                log.row(values)
                shown, window_steps, window_s = values, 0, 0.0
            log.show(step, shown, final=at_end)
            if time.monotonic() - last_ckpt > cfg.checkpoint_every_s:
                save_state()
                last_ckpt = time.monotonic()
            t0 = time.monotonic()
    finally:
        log.close()
        if updating:  # interrupted inside an update (Ctrl-C): the weights are a step ahead of the count
            acc.print(f"interrupted inside step {step + 1}: {last} keeps the last periodic save")
        elif step > 0 or not fresh or request.signal is not None:  # a run that failed in its first step leaves
            # nothing to resume (it starts afresh); one a SIGTERM stopped before it says it saved, and resumes
            save_state(rng_before_step if in_step else None)
    acc.wait_for_everyone()
    if request.signal:
        acc.print(f"{request.signal} at step {step}: stopped early, last.pt saved and the weights exported; "
                  "the same command resumes the run")
    final = output / "model.safetensors"
    if main:
        record = Training(name=output.name, steps=step, minutes=round(elapsed / 60, 2), slices=task.train_slices,
                          processes=acc.num_processes, seed=cfg.seed, started_from=started_from)
        save_checkpoint(final, ema.network, task.metadata(record), dtype=getattr(torch, cfg.weights_dtype))
        plot_progress(output / "log.csv", output / "progress.png")
    acc.wait_for_everyone()
    if request.signal:
        raise StoppedEarly(request.signal, str(final))
    return final
