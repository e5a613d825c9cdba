"""Activations from a PyTorch model: hook a layer, stream to disk, threshold, attach.

``cxql.record(model, "layer4", store)`` runs ``model`` over the store's probe
images (those of the Broden directory it was built from) in batches, with a
forward hook on the named module. Each batch's output goes straight into a
memory-mapped ``.npy`` ([images, units, h, w] float32), so a layer of any
size never sits in memory; the forward pass stops at the hooked module, since
later layers are not needed. The activations are then thresholded and
attached with :meth:`ConceptStore.add_units`, which reads them in chunks.

Thresholds follow SPEC section 1: by default the exact quantile at level
0.995 of each unit's raw activations (numpy's linear method), before bilinear
upsampling to the mask resolution. NetDissect-Lite and compexp estimate the
same quantile with a streaming sketch, so their thresholds can differ from
ours in the last digits. ``threshold="quantile:0.99"`` or a number overrides.

Images are read with Pillow, resized to the size the store records (Broden's
``ih x iw``), scaled to [0, 1] and normalised with the ImageNet mean and
standard deviation; pass ``transform`` (a PIL image -> tensor [3, H, W]) for
anything else. Images can also be given directly: an array or tensor
[n, 3, H, W], or an iterable of such batches.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

import numpy as np

from .errors import DataError, UsageError, did_you_mean
from .progress import counter, stoppable
from .resources import locate_store
from .store import ConceptStore, Layer
from .store import units as un
from .store.validate_input import check_new_layer
from .subcommands import Command, Tools

if TYPE_CHECKING:
    import torch
else:  # torch loads when a model runs, not when cxql is imported (start-up time)
    from .lazy import lazy_module

    torch = lazy_module("torch")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _Stop(Exception):
    """Raised by the hook once the layer's output is captured, to skip the rest of the model."""


def record(model: torch.nn.Module, layer: str,
           images: "ConceptStore | np.ndarray | torch.Tensor | Iterable[torch.Tensor]",
           store: ConceptStore | None = None, *,
           name: str | None = None, batch_size: int = 32, device: str | None = None,
           threshold: "float | str | un.Threshold | None" = None, out: str | os.PathLike | None = None,
           transform: Callable | None = None, keep_activations: bool = True,
           progress: Callable[[int], None] | None = None, replace: bool = False,
           on_warning: Callable[[str], None] | None = None,
           should_stop: Callable[[], bool] | None = None) -> "Layer | np.ndarray":
    """Record ``model``'s module ``layer`` over ``images``; attach it to ``store`` when there is one.

    ``images`` is a store (its Broden images; it is also the store attached
    to), an array or tensor [n, 3, H, W], or an iterable of batches. Returns
    the attached :class:`Layer`, or without a store the memory-mapped
    activations (kept at ``out`` if given). ``name`` is the layer's name in
    the store (default: ``layer``), and an existing layer of that name is
    replaced only with ``replace=True`` (checked before the model runs);
    ``progress`` is called with each batch's size; ``on_warning`` as in
    :meth:`ConceptStore.add_units`. ``should_stop()`` is asked after each
    batch; a yes raises :class:`~cxql.errors.Cancelled` before anything is attached.
    """
    if isinstance(images, ConceptStore):
        store = store or images
        paths = store_images(images)
        n, batches = len(paths), image_batches(paths, batch_size, transform or default_transform(images))
    else:
        n, batches = _count(images), tensor_batches(images, batch_size)
    if store is not None:
        check_new_layer(store.layers, name or layer, replace)
    if store is not None and n != store.n_samples:
        raise DataError(f"{n} images but the store has {store.n_samples} samples; "
                        "images must be the store's samples, in its order")
    target, temporary = (Path(out), False) if out else (_scratch(store), True)
    try:
        acts = stream_activations(model, find_module(model, layer), batches, n, target,
                                  device or ("cuda" if torch.cuda.is_available() else "cpu"),
                                  stoppable(progress, should_stop, "recording"))
        if store is None:
            return acts
        return store.add_units(name or layer, acts, threshold, keep_activations=keep_activations,
                               replace=replace, on_warning=on_warning)
    finally:
        if temporary:
            target.unlink(missing_ok=True)  # a mapping made from it stays valid (POSIX)


def find_module(model: torch.nn.Module, layer: str) -> torch.nn.Module:
    """The submodule named ``layer`` (as in ``model.named_modules()``)."""
    modules = dict(model.named_modules())
    if layer not in modules or not layer:
        names = [n for n in modules if n]
        raise DataError(f"the model has no module {layer!r}",
                        hint=did_you_mean(layer, names) or f"modules: {', '.join(names[:20])}")
    return modules[layer]


def stream_activations(model: torch.nn.Module, module: torch.nn.Module, batches: Iterable[torch.Tensor],
                       n: int, out: Path, device: str, progress: Callable[[int], None] | None = None
                       ) -> np.ndarray:
    """float32 [n, units, ...]: the module's output over all batches, written into ``out`` (.npy)."""
    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        captured.append(output[0] if isinstance(output, (tuple, list)) else output)
        raise _Stop

    home = next(model.parameters(), torch.empty(0)).device
    training = model.training
    model.to(device).eval()
    handle = module.register_forward_hook(hook)
    acts, done = None, 0
    try:
        with torch.no_grad():
            for batch in batches:
                captured.clear()
                try:
                    model(batch.to(device))
                except _Stop:
                    pass
                if not captured:
                    raise DataError("the hooked module did not run during the forward pass")
                block = captured[0].detach().float().cpu().numpy()
                if block.ndim not in (2, 4) or block.shape[0] != len(batch):
                    raise DataError(f"the module's output has shape {list(block.shape)}; expected "
                                    "[batch, units, h, w] or [batch, units]")
                if acts is None:
                    acts = np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=(n, *block.shape[1:]))
                if done + len(block) > n:
                    raise DataError(f"more than the {n} expected images")
                acts[done:done + len(block)] = block
                done += len(block)
                if progress:
                    progress(len(block))
    finally:
        handle.remove()
        model.to(home).train(training)  # the caller's model as it was
    if acts is None or done != n:
        raise DataError(f"recorded {done} images, expected {n}")
    acts.flush()
    return acts


# ------------------------------------------------------------------ images


def store_images(store: ConceptStore) -> list[Path]:
    """The image files of a store (metadata ``image_root``, relative to the store if not absolute), in sample order."""
    root = store.metadata.get("image_root")
    names = store.sample_names
    if not root or not names:
        raise DataError("this store records no probe images (build it with cxql store build broden), "
                        "so pass the images to record")
    base = Path(root) if Path(root).is_absolute() or store.path is None else Path(store.path) / root
    return [base / name for name in names]


def default_transform(store: ConceptStore | None = None, size: Sequence[int] | None = None) -> Callable:
    """PIL image -> float tensor [3, H, W]: RGB, resized, scaled to [0, 1], ImageNet-normalised."""
    size = tuple(size or (store.metadata.get("image_size") if store is not None else None) or ()) or None
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def transform(img) -> torch.Tensor:
        img = img.convert("RGB")
        if size and img.size != (size[1], size[0]):
            from PIL import Image
            img = img.resize((size[1], size[0]), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (x - mean) / std

    return transform


def load_image(path: Path, transform: Callable) -> torch.Tensor:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return transform(img)
    except FileNotFoundError:
        raise DataError(f"{path}: missing probe image") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot decode image ({exc})") from None


def image_batches(paths: Sequence[Path], batch_size: int, transform: Callable, workers: int = 4
                  ) -> Iterator[torch.Tensor]:
    """Batches of decoded images; the next batch decodes in threads while the model runs."""
    with ThreadPoolExecutor(workers) as pool:
        chunks = [paths[i:i + batch_size] for i in range(0, len(paths), batch_size)]
        pending = pool.map(lambda p: load_image(p, transform), chunks[0]) if chunks else None
        for i in range(len(chunks)):
            images = list(pending)
            if i + 1 < len(chunks):
                pending = pool.map(lambda p: load_image(p, transform), chunks[i + 1])
            yield torch.stack(images)


def tensor_batches(images: "np.ndarray | torch.Tensor | Iterable[torch.Tensor]", batch_size: int
                   ) -> Iterator[torch.Tensor]:
    if isinstance(images, (np.ndarray, torch.Tensor)):
        for i in range(0, len(images), batch_size):
            yield torch.as_tensor(np.asarray(images[i:i + batch_size]) if isinstance(images, np.ndarray)
                                  else images[i:i + batch_size], dtype=torch.float32)
    else:
        for batch in images:
            yield torch.as_tensor(batch, dtype=torch.float32)


def _count(images) -> int:
    if isinstance(images, (np.ndarray, torch.Tensor)):
        if images.ndim != 4:
            raise DataError(f"images must be [n, channels, H, W], got shape {list(images.shape)}")
        return len(images)
    try:
        return sum(len(b) for b in images) if isinstance(images, (list, tuple)) else len(images)
    except TypeError:
        raise DataError("an iterable of batches must have a len(); pass a list, or an array [n, 3, H, W]") from None


def _scratch(store: ConceptStore | None) -> Path:
    directory = store.path if store is not None and store.path is not None else None
    fd, name = tempfile.mkstemp(prefix=".activations-", suffix=".npy", dir=directory)
    os.close(fd)
    return Path(name)


# ------------------------------------------------------------------ CLI


def load_factory(spec: str) -> torch.nn.Module:
    """``package.module:factory`` or ``path/to/file.py:factory`` -> the model the factory returns."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"--model must be module:factory or file.py:factory, got {spec!r}")
    try:
        if module_name.endswith(".py"):
            loader = importlib.util.spec_from_file_location(Path(module_name).stem, module_name)
            if loader is None or not Path(module_name).exists():
                raise UsageError(f"--model: no such file {module_name}")
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"--model: cannot import {module_name} ({exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UsageError(f"--model: {module_name} has no callable {attr!r}")
    model = factory()
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"--model: {spec}() returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store")
    p.add_argument("layer", help="module name in model.named_modules(), e.g. layer4")
    p.add_argument("--model", required=True, metavar="MODULE:FACTORY",
                   help="a function returning the model, e.g. torchvision.models:resnet18 or my.py:make; "
                        "for a token store, hf:PATH (a Hugging Face model on disk)")
    p.add_argument("--name", help="the layer's name in the store (default: LAYER)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", help="torch device (default: cuda when available)")
    p.add_argument("--threshold", help="absolute value (0.5 or value:0.5), or quantile:LEVEL (default quantile:0.995)")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"),
                   help="resize images to H W (default: the store's recorded image size)")
    p.add_argument("--save", metavar="ACTS.npy", help="also keep the raw activations in this file")
    p.add_argument("--masks-only", "--no-keep", dest="no_keep", action="store_true",
                   help="keep only the masks, not the raw activations (no SET threshold, AUROC or p-values)")
    p.add_argument("--replace", action="store_true", help="replace the layer if the store has one of that name")
    p.add_argument("--pooling", choices=("max", "mean", "first"), default="max",
                   help="token stores, --model hf:PATH: sub-word activations to a word (default max)")


def _command(args: argparse.Namespace, tools: Tools) -> int:
    store = ConceptStore.open(locate_store(args.store, writes=True))
    if args.model.startswith("hf:") or store.kind == "tokens":  # a language model over a token store
        from .record_tokens import run_cli

        return run_cli(args, store, tools)
    model = load_factory(args.model)
    bar = tools.progress()
    bar.start(store.n_samples, f"recording {args.layer}")
    try:
        layer = record(model, args.layer, store, name=args.name, batch_size=args.batch_size, device=args.device,
                       threshold=args.threshold, out=args.save, keep_activations=not args.no_keep,
                       transform=default_transform(store, args.image_size), progress=counter(bar),
                       replace=args.replace, on_warning=tools.warn, should_stop=tools.should_stop)
    finally:
        bar.finish()
    print(f"added {layer.describe()}", file=sys.stderr)
    return 0


#: ``cxql units record`` (listed in :data:`cxql.subcommands.BUILTIN`).
COMMAND = Command(("units", "record"), "run a torch model over the store's images and attach a layer", _arguments,
                  _command, description=__doc__.split("\n\n")[0])
