"""The demo store's CNN and its shipped weights: ``examples/digits_model.py:load_model``.

Why the weights ship: training the CNN is seeded and repeats bit for bit on
one machine, but not across machines (torch's CPU kernels sum in different
orders on different CPUs and versions), and a model that differs in the last
digits predicts a few digits differently, so the demo store's ``pred``
concepts, signatures and SEARCH answers drifted between machines. The trained
weights (about 40 KB) are kept in ``examples/data/digits_cnn.npz`` and the
store is rebuilt from them; ``build_demo_store.py --train`` retrains and
rewrites them.

The activations are computed in float64 on one thread and stored as float32,
so rounding differences between CPUs (around 1e-16) vanish in the cast.

``load_model()`` is a plain ``module:factory``: any code (or ``cxql units
record ... --model examples/digits_model.py:load_model``) gets the trained
model, in eval mode, on CPU. Its input is ``[batch, 1, 16, 16]`` float
intensities in 0..1 (1 = full ink): the 8x8 digits upsampled bilinearly.
Only torch and numpy are needed here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from cxql.models.digits import DigitsCNN  # noqa: F401  (the class lives in the package)

WEIGHTS = Path(__file__).resolve().parent / "data" / "digits_cnn.npz"
IMAGE_SHAPE = (16, 16)
RECORDED = ("conv1", "conv2", "fc")


def save_weights(model: nn.Module, path: Path = WEIGHTS) -> None:
    """The state_dict as a plain .npz (no pickle): one array per tensor, keys as in the state_dict."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **{k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})
    tmp.replace(path)


def load_model(path: str | Path = WEIGHTS) -> DigitsCNN:
    """The trained demo CNN from its shipped weights, in eval mode on CPU."""
    model = DigitsCNN()
    with np.load(Path(path), allow_pickle=False) as data:
        state = {k: torch.from_numpy(np.array(data[k])) for k in data.files}
    model.load_state_dict(state, strict=True)
    return model.eval()


@torch.no_grad()
def run(model: DigitsCNN, images: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(float32 activations per recorded layer, predicted class per image) for images [N, 16, 16] in 0..1.

    Computed in float64 on one thread (the model itself is left as it was),
    so that the result is the same on every machine once cast to float32.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        wide = DigitsCNN().double().eval()
        wide.load_state_dict({k: v.double() if v.is_floating_point() else v for k, v in model.state_dict().items()})
        out = wide.layers(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float64))[:, None])
    finally:
        torch.set_num_threads(threads)
    logits = out.pop("logits")
    return {name: out[name].float().numpy() for name in RECORDED}, logits.argmax(1).numpy()
