import numpy as np
import torch

from medinpaint.augment import random_symmetries


def test_random_symmetries_give_the_8_symmetries_of_the_square_and_nothing_else() -> None:
    base = torch.zeros(1, 8, 8, dtype=torch.bool)
    base[0, 0, :3] = True
    gen = torch.Generator().manual_seed(1)
    seen = {random_symmetries(base, gen)[0].numpy().tobytes() for _ in range(300)}
    assert len(seen) == 8
    assert all(np.frombuffer(b, bool).sum() == 3 for b in seen)
    wide = torch.zeros(1, 4, 6, dtype=torch.bool)
    wide[0, 0, 0] = True
    assert {tuple(random_symmetries(wide, gen)[0].nonzero()[0].tolist()) for _ in range(100)} == {(0, 0), (0, 5), (3, 0), (3, 5)}


def test_all_channels_of_an_item_get_the_same_transform() -> None:
    gen = torch.Generator().manual_seed(0)
    image = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4).expand(6, 2, 4, 4).clone()
    out = random_symmetries(image, gen)
    assert torch.equal(out[:, 0], out[:, 1])
    assert len({out[i, 0].numpy().tobytes() for i in range(6)}) > 1  # items differ from each other
