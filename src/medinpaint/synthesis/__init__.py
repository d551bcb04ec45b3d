"""Synthesis: generative models of CT slices together with their tissue maps and vertebra levels.

Stable API (used by `medinpaint fill-gaps` and the CLI)::

    from medinpaint.synthesis import load_generator

    gen = load_generator(None, size=64)               # the shipped generator, or load_generator("run/model.safetensors")
    images, tissue, vertebrae = gen.sample(n=1000, seed=0, steps=25, sampler="ddim", temperature=1.0,
                                           batch_size=256, vertebrae=None)
    # images float32 (n,1,H,W) in [0,1]; tissue uint8 (n,H,W) in {0,100,255}; vertebrae int16 (n,) in 0..24
    for chunk in gen.stream(n=100_000, seed=0, batch_size=512):   # chunk by chunk (a `Samples` each)
        ...
    # the noise is seeded per sample: the same seed gives the same samples whatever the batch_size

`load_generator(path=None, size=None, device="cpu", compile=False)` accepts a diffusion or VAE checkpoint
written by `medinpaint synth train`; `gen.size`, `gen.family` ("diffusion" or "vae"), `gen.name` and
`gen.checksum` describe it. `vertebrae` is None (levels drawn as often as in the training data), one level, or
one per sample; `guidance` > 1 applies classifier-free guidance. `steps` and `sampler` are for diffusion only
(a VAE draws in one pass). Bad arguments raise `medinpaint.InputError`.

Layout (networks apart from procedures): the networks are in `medinpaint.models` (denoiser, VAE, encoder);
`registry.py` names the families and loads their checkpoints; `diffusion.py` the schedule and samplers;
`objectives.py` the losses; `task.py` what the training engine (`medinpaint.engine`) needs of each family;
`generator.py` sampling; `writers.py` streaming to disk; `features.py`, `memorisation.py`, `utility.py`,
`figures.py` and `report.py` the quality measures; `cli.py` the `medinpaint synth` commands.
"""

from typing import Any

__all__ = ["Samples", "SliceGenerator", "load_generator"]


def __getattr__(name: str) -> Any:
    # Imported lazily so `medinpaint --help` does not load torch.
    if name in __all__:
        from medinpaint.synthesis import generator

        return getattr(generator, name)
    raise AttributeError(name)
