"""A model attached to a store: how to rebuild it, what it reads, where its layers are.

Why: an explanation is only worth what it predicts about the model, so
ABLATE and the class analyses re-run the model. A store remembers its model
as a ``module:factory`` reference (a function that returns the bare
``nn.Module``), the weights (one store array per state-dict entry, prefixed
``model_weight.``, so no pickle and no file outside the store), the probe
inputs and targets the model reads (arrays ``model_inputs`` and
``model_targets``, one per sample, in store order), the class names and,
per store layer, the module whose output it recorded. All of it sits in the
store's metadata under ``attached_model``; :func:`attach` writes it into an
in-memory store, or into a store on disk in one atomic change under its lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from .errors import DataError, QueryError

if TYPE_CHECKING:
    import torch

    from .store import ConceptStore
else:  # torch loads when a model runs, not when cxql is imported (start-up time)
    from .lazy import lazy_module

    torch = lazy_module("torch")

KEY = "attached_model"
WEIGHT_PREFIX = "model_weight."
INPUTS = "model_inputs"
TARGETS = "model_targets"

HOW_TO_ATTACH = ("attach one with `cxql model attach STORE --model MODULE:FACTORY ...` or cxql.model.attach(store, 'module:factory', model, inputs, "
                 "targets, classes, {'layer': 'module.name'}) (see docs/model.md)")


@dataclass
class AttachedModel:
    """A store's model, rebuilt with its weights, with the inputs and targets it is judged on."""

    factory: str
    model: "torch.nn.Module"
    inputs: np.ndarray
    targets: np.ndarray
    classes: list[str]
    modules: dict[str, str]
    output: str | None = None  # the module that maps the last layer to class scores (a Linear)

    def module_for(self, layer: str) -> str:
        if layer not in self.modules:
            raise QueryError(f"the attached model has no module recorded for layer {layer!r}; "
                             f"layers with a module: {', '.join(self.modules) or 'none'}", needle=layer)
        return self.modules[layer]


def attach(store: "ConceptStore", factory: str, model: "torch.nn.Module", inputs: np.ndarray,
           targets: Sequence[int], classes: Sequence[str], modules: Mapping[str, str],
           output: str | None = None) -> None:
    """Record ``model`` in ``store``: in memory, or on disk atomically (a re-attach replaces the old model).

    ``factory()`` must return the same architecture untrained; the weights
    come from ``model.state_dict()``. ``inputs`` has one entry per sample
    (the model's input for it), ``targets`` the true class index per sample.
    ``output`` names the Linear module that turns the last layer into class
    scores (for class contributions).
    """
    inputs = np.ascontiguousarray(inputs)
    targets = np.asarray(targets, dtype=np.int64)
    if len(inputs) != store.n_samples or targets.shape != (store.n_samples,):
        raise DataError(f"attach: {len(inputs)} inputs and {len(targets)} targets for a store of "
                        f"{store.n_samples} samples; give one of each per sample")
    if targets.size and (targets.min() < 0 or targets.max() >= len(classes)):
        raise DataError(f"attach: targets must lie in 0..{len(classes) - 1} (one per class name)")
    names = dict(model.named_modules())
    if output is not None and output not in names:
        raise DataError(f"attach: output module {output!r} is not in the model")
    for layer, module in modules.items():
        if module not in names:
            raise DataError(f"attach: layer {layer!r} names module {module!r}, which the model does not have")
    arrays = {WEIGHT_PREFIX + key: value.detach().cpu().numpy() for key, value in model.state_dict().items()}
    arrays[INPUTS] = inputs
    arrays[TARGETS] = targets
    spec = {"factory": factory, "weights": f"arrays {WEIGHT_PREFIX}*", "inputs": INPUTS, "targets": TARGETS,
            "classes": [str(c) for c in classes], "layers": dict(modules), "output": output}
    store.set_store_arrays(arrays, {KEY: spec}, drop_prefix=WEIGHT_PREFIX)  # atomic, under the lock, on disk


def load_weights(model: "torch.nn.Module", path: str) -> "torch.nn.Module":
    """Load a state dict from ``.npz`` (one array per entry) or ``.pt`` into ``model``; DataError when they do not fit."""
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise DataError(f"--weights: no such file {path}")
    try:
        if file.suffix == ".npz":
            with np.load(file, allow_pickle=False) as z:
                state = {k: torch.from_numpy(np.array(z[k])) for k in z.files}
        elif file.suffix == ".pt":
            state = torch.load(file, map_location="cpu", weights_only=True)
        else:
            raise DataError(f"--weights {path}: give a .npz (one array per state-dict entry) or a .pt state dict")
    except (OSError, ValueError, RuntimeError) as exc:
        raise DataError(f"--weights {path}: cannot read it ({exc})") from None
    if not isinstance(state, dict):
        raise DataError(f"--weights {path}: holds {type(state).__name__}, not a state dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise DataError(f"--weights {path} do not fit the model: {str(exc).splitlines()[0]}") from None
    return model


def has_model(store: "ConceptStore") -> bool:
    return KEY in store.metadata


def load(store: "ConceptStore") -> AttachedModel:
    """The store's model with its weights, in eval mode on CPU; a clear error when there is none."""
    from .record import load_factory
    from .errors import UsageError

    spec = store.metadata.get(KEY)
    if not spec:
        raise QueryError(f"store {store.path or '(in memory)'} has no attached model; {HOW_TO_ATTACH}")
    try:
        model = load_factory(spec["factory"])
    except UsageError as exc:
        raise DataError(f"the store's attached model cannot be rebuilt: {exc}") from None
    state = {k[len(WEIGHT_PREFIX):]: torch.from_numpy(np.array(v)) for k, v in store.arrays.items()
             if k.startswith(WEIGHT_PREFIX)}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise DataError(f"the store's model weights do not fit {spec['factory']}: {str(exc).splitlines()[0]}") from None
    return AttachedModel(spec["factory"], model.eval(), np.asarray(store.arrays[spec["inputs"]]),
                         np.asarray(store.arrays[spec["targets"]], dtype=np.int64), list(spec["classes"]),
                         dict(spec["layers"]), spec.get("output"))


def predict(attached: AttachedModel, layer: str | None = None, units: Sequence[int] = (),
            batch: int = 512) -> np.ndarray:
    """Predicted class per sample, with ``units`` of ``layer``'s module zeroed (channel dim 1) by a forward hook.

    Checks that the model's outputs match the store's classes.
    """
    model = attached.model
    handle = None
    if layer is not None and len(units):
        module = dict(model.named_modules())[attached.module_for(layer)]
        index = torch.as_tensor(list(units), dtype=torch.long)

        def zero(_module, _inputs, output):
            output = output.clone()
            output[:, index] = 0
            return output

        handle = module.register_forward_hook(zero)
    out = []
    try:
        with torch.no_grad():
            for start in range(0, len(attached.inputs), batch):
                x = torch.from_numpy(np.array(attached.inputs[start:start + batch]))
                logits = model(x)
                if logits.ndim != 2 or logits.shape[1] != len(attached.classes):
                    raise DataError(f"the attached model returns outputs of shape {tuple(logits.shape)}, but the "
                                    f"store names {len(attached.classes)} classes; they must match")
                out.append(logits.argmax(1).numpy())
    finally:
        if handle is not None:
            handle.remove()
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def per_class_accuracy(preds: np.ndarray, targets: np.ndarray, n_classes: int) -> np.ndarray:
    """float [n_classes]: accuracy among the samples of each class (nan for a class with none)."""
    hits = np.bincount(targets, weights=(preds == targets).astype(float), minlength=n_classes)
    counts = np.bincount(targets, minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)
