"""A torch text model's side: its units' activations, output weights and predictions.

Recording
---------
A text store has one position per pair, so a layer's activations must be
[pairs, units]. Text models give per-token outputs ([batch, tokens, units]) or
already pooled ones ([batch, units]); the user says how to pool:

- ``"none"``: the module's output is already [batch, units] (an MLP layer, as
  the paper's penultimate NLI layer);
- ``"mean"`` / ``"max"``: over the tokens, ignoring padding when the inputs
  carry an ``attention_mask`` (as Hugging Face tokenizers give);
- ``"first"`` (e.g. [CLS]) / ``"last"`` (the last non-padding token);
- or any function ``(output, inputs) -> [batch, units]``.

A forward hook on the chosen module (an ``nn.Module`` or its dotted name,
found by :func:`cxql.record.find_module`) captures its output while the model runs under ``torch.no_grad`` in
evaluation mode; the hook is always removed, even on errors. The module must
run once per forward pass (a sentence encoder called once for the premise and
once for the hypothesis is hooked at the layer that joins them). The result goes
to ``store.add_units(layer, acts)`` (threshold > 0 by default for text) or to
a .npy file for ``cxql units add``. Pairs should come from
:func:`cxql.store.nli.read_pairs` on the same file the store was built from,
so rows line up with the store's pairs.

The NLI analysis
----------------
The paper reports, next to each unit's formula, the class its output weights
favour and the model's accuracy on the pairs where the unit fires. For that a
layer needs the final layer's weights [classes, units] and the model's
prediction for every pair: :func:`attach_classifier` keeps them in the store's
metadata, and ``SEARCH ... WITH accuracy`` adds ``favours`` (the class with
the largest weight), ``weights`` and ``accuracy`` (over the pairs where the
unit fires that have a gold label; None when there are none) to each row.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from .errors import DataError, QueryError
from .record import find_module
from .store import ConceptStore
from .store import signatures as sig

Pool = str | Callable[[torch.Tensor, Any], torch.Tensor]
POOLS = ("none", "mean", "max", "first", "last")


@contextmanager
def capture(module: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect ``module``'s outputs (the first tensor of a tuple output) while the block runs."""
    outputs: list[torch.Tensor] = []

    def hook(_module: torch.nn.Module, _inputs: Any, output: Any) -> None:
        outputs.append(output[0] if isinstance(output, (tuple, list)) else output)

    handle = module.register_forward_hook(hook)
    try:
        yield outputs
    finally:
        handle.remove()


def resolve_module(model: torch.nn.Module, module: torch.nn.Module | str) -> torch.nn.Module:
    """The module itself, or the submodule of ``model`` with that dotted name."""
    return module if isinstance(module, torch.nn.Module) else find_module(model, module)


def pool_output(output: torch.Tensor, inputs: Any, pool: Pool) -> torch.Tensor:
    """[batch, units] from a module output, pooled over tokens as ``pool`` says."""
    if callable(pool):
        return pool(output, inputs)
    if pool not in POOLS:
        raise DataError(f"unknown pooling {pool!r}; use one of {', '.join(POOLS)} or a function")
    if pool == "none":
        if output.dim() != 2:
            raise DataError(f"pool='none' needs a [batch, units] output, got {list(output.shape)}; "
                            "pick mean, max, first or last")
        return output
    if output.dim() != 3:
        raise DataError(f"pool={pool!r} needs a [batch, tokens, units] output, got {list(output.shape)}")
    mask = _attention_mask(inputs, output)
    if pool == "first":
        return output[:, 0]
    if pool == "last":
        last = mask.sum(dim=1).clamp(min=1) - 1
        return output[torch.arange(output.shape[0]), last]
    if pool == "max":
        return output.masked_fill(~mask[..., None], float("-inf")).amax(dim=1)
    m = mask[..., None].to(output.dtype)
    return (output * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)


def _attention_mask(inputs: Any, output: torch.Tensor) -> torch.Tensor:
    mask = inputs.get("attention_mask") if isinstance(inputs, Mapping) else None
    if mask is None:
        return torch.ones(output.shape[:2], dtype=torch.bool, device=output.device)
    return mask.to(output.device).bool()


def _run(model: torch.nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def _to_device(inputs: Any, device: torch.device) -> Any:
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device)
    if isinstance(inputs, Mapping):
        return {k: _to_device(v, device) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(_to_device(v, device) for v in inputs)
    return inputs


def record_text(model: torch.nn.Module, module: torch.nn.Module | str, pairs: Sequence[Any],
                encode: Callable[[Sequence[Any]], Any], *, pool: Pool = "mean", batch_size: int = 64,
                device: str | torch.device | None = None) -> np.ndarray:
    """float32 [pairs, units]: ``module``'s pooled output for every pair, in order.

    ``encode(batch_of_pairs)`` returns the model's inputs for a batch: a dict
    (called as ``model(**inputs)``), a tuple (``model(*inputs)``) or a tensor.
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be at least 1, got {batch_size}")
    target = resolve_module(model, module)
    device = torch.device(device) if device is not None else next(model.parameters(), torch.zeros(0)).device
    was_training = model.training
    model.eval()
    rows: list[np.ndarray] = []
    try:
        with torch.no_grad(), capture(target) as outputs:
            for start in range(0, len(pairs), batch_size):
                batch = pairs[start:start + batch_size]
                inputs = _to_device(encode(batch), device)
                outputs.clear()
                _run(model, inputs)
                if len(outputs) != 1:
                    raise DataError(f"the hooked module ran {len(outputs)} times in one forward pass; "
                                    "hook a module that runs once per batch of pairs")
                pooled = pool_output(outputs[-1], inputs, pool)
                if pooled.shape[0] != len(batch):
                    raise DataError(f"the pooled output has {pooled.shape[0]} rows for a batch of {len(batch)} pairs")
                rows.append(pooled.detach().float().cpu().numpy())
    finally:
        model.train(was_training)
    if not rows:
        raise DataError("no pairs to record")
    return np.concatenate(rows).astype(np.float32, copy=False)


# ---------------------------------------------------------------- the NLI analysis


def attach_classifier(store: ConceptStore, layer: str, weights: Any, predictions: Any,
                      classes: Sequence[str] = ("entailment", "neutral", "contradiction")) -> dict[str, Any]:
    """Keep a layer's output weights and the model's predictions for ``SEARCH ... WITH accuracy``.

    ``weights`` is [classes, units] (a torch Linear's ``weight``) or [units,
    classes]; ``predictions`` is class indices [pairs] or scores [pairs,
    classes] (argmax taken) in the store's pair order.
    """
    if layer not in store.layers:
        raise DataError(f"unknown layer {layer!r}; layers: {', '.join(store.layers) or 'none'}")
    units, c = store.layers[layer].n_units, len(classes)
    w = _array(weights, "weights", np.float64)
    if w.ndim != 2 or (c, units) not in (w.shape, w.shape[::-1]):
        raise DataError(f"weights must be [{c} classes, {units} units] or [{units}, {c}], got {list(w.shape)}")
    w = w if w.shape == (c, units) else w.T
    _check_finite(w, "weights")
    p = _array(predictions, "predictions", None)
    if p.ndim == 2 and p.dtype.kind == "f":
        _check_finite(p, "prediction scores")  # argmax would pick a NaN's class
    p = p.argmax(axis=1) if p.ndim == 2 else p
    if p.shape != (store.n_samples,) or not np.issubdtype(p.dtype, np.integer):
        raise DataError(f"predictions must be {store.n_samples} class indices (or [{store.n_samples}, {c}] scores), "
                        f"got {p.dtype} {list(p.shape)}")
    if p.size and (p.min() < 0 or p.max() >= c):
        raise DataError(f"predictions must be class indices 0..{c - 1}")
    entry = {"classes": list(classes)}
    store.set_layer_arrays(layer, {"classifier_weights": w, "classifier_predictions": p.astype(np.int64)},
                           {"classifier": entry})
    return {**entry, "weights": w, "predictions": p}


def _array(value: Any, what: str, dtype: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what}: not a numeric array ({exc})") from None


def _check_finite(values: np.ndarray, what: str) -> None:
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        raise DataError(f"{what} must be finite numbers; found {values[tuple(bad[0])]} at {bad[0].tolist()}")


def classifier(store: ConceptStore, layer: str) -> dict[str, Any] | None:
    """A layer's attached classifier: classes, weights [classes, units] and predictions [pairs], or None.

    Weights and predictions are arrays of the layer (version 2 stores); stores
    written before kept them as lists in the metadata, which still reads.
    """
    found = store.layers.get(layer)
    if found is not None and "classifier" in found.meta:
        return {"classes": found.meta["classifier"]["classes"], "weights": found.arrays["classifier_weights"],
                "predictions": found.arrays["classifier_predictions"]}
    return store.metadata.get("classifiers", {}).get(layer)


def gold_labels(store: ConceptStore, classes: Sequence[str]) -> np.ndarray:
    """int64 [pairs]: each pair's gold class index from its ``label`` concept, -1 when none."""
    gold = np.full(store.n_positions, -1, dtype=np.int64)
    by_name = {c.name: c.index for c in store.concepts if c.category == "label"}
    bits, pos_sig = store.signature_bits, np.asarray(store.position_signatures, dtype=np.int64)
    for ci, name in enumerate(classes):
        if name in by_name:
            gold[sig.concept_column(bits, by_name[name])[pos_sig]] = ci
    return gold


def active_pairs(session: Any) -> Callable[[int], np.ndarray]:
    """unit -> bool [pairs]: where it fires under the session's threshold (one position per pair)."""
    n = session.store.n_positions

    def fires(unit: int) -> np.ndarray:
        mask = np.zeros(n, dtype=bool)
        mask[session.unit_positions(unit)] = True
        return mask
    return fires


def accuracy_columns(session: Any, units: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Per unit: the class its weights favour, the weights, and the model's accuracy where it fires."""
    layer = session.layer()
    entry = classifier(session.store, layer.name)
    if entry is None:
        raise QueryError(f"layer {layer.name!r} has no classifier attached, so WITH accuracy has nothing to report",
                         hint="attach one with cxql.text_record.attach_classifier or: "
                              "cxql nli classifier STORE LAYER --weights W.npy --predictions P.npy")
    classes, w = entry["classes"], np.asarray(entry["weights"], dtype=np.float64)
    gold = gold_labels(session.store, classes)
    correct, labelled = np.asarray(entry["predictions"]) == gold, gold >= 0
    fires, out = active_pairs(session), {}
    for u in units:
        active = fires(u) & labelled
        n = int(np.count_nonzero(active))
        out[u] = {"favours": classes[int(np.argmax(w[:, u]))],
                  "weights": {c: float(w[i, u]) for i, c in enumerate(classes)},
                  "accuracy": int(np.count_nonzero(correct & active)) / n if n else None,
                  "labelled_active": n}
    return out
