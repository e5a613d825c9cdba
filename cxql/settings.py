"""Session settings (``SET name = value``): one registry with defaults and checks.

The shell completes these names and values from the same table, and
``SHOW settings`` lists it, so a setting exists in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from . import metrics
from .errors import NameResolutionError, QueryError, did_you_mean
from .limits import MAX_LENGTH
from .memory import default_limit, parse_size


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    check: Callable[[Any], Any]
    help: str
    choices: tuple[str, ...] = ()


def _positive_int(name: str) -> Callable[[Any], int]:
    return _whole(name, 1)


def _whole(name: str, least: int, most: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise QueryError(f"{name} must be a whole number of at least {least}, got {value!r}", needle=str(value))
        if most is not None and value > most:
            raise QueryError(f"{name} must be at most {most}, got {value!r}", needle=str(value))
        return value
    return check


def _device(value: Any) -> str:
    import torch

    text = str(value).lower()
    if text == "cpu":
        return text
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise QueryError("device 'cuda' is not available on this machine (torch sees no GPU)",
                             needle=str(value))
        return text
    if text == "mps" and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return text
    raise QueryError(f"unknown device {value!r}; use 'cpu' or 'cuda'", needle=str(value))


def _threshold(value: Any) -> Any:
    from .store.units import Threshold

    if isinstance(value, str) and value.lower() in ("default", "store", "none"):
        return None
    Threshold.parse(value, Threshold("absolute"))  # raises a clear error when malformed
    return value


def _layer(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _bool(value: Any) -> bool:
    text = str(value).lower()
    if text in ("1", "true", "on", "yes"):
        return True
    if text in ("0", "false", "off", "no"):
        return False
    raise QueryError(f"expected on or off, got {value!r}", needle=str(value))


def _engine(value: Any) -> str:
    from . import searcher

    text = str(value).lower()
    if text not in searcher.ENGINES:
        raise QueryError(f"engine must be one of {', '.join(map(repr, searcher.ENGINES))}, got {value!r}",
                         needle=str(value))
    return text


def _workers(value: Any) -> int | str:
    if str(value).lower() == "auto":
        return "auto"
    return _whole("workers", 1, 256)(value)


def _metric(value: Any) -> str:
    return metrics.get(str(value)).name


SETTINGS: dict[str, Setting] = {s.name: s for s in [
    Setting("beam", 5, _positive_int("beam"), "beam size of SEARCH when BEAM is not given"),
    Setting("length", 3, _whole("length", 1, MAX_LENGTH), "maximum formula length of SEARCH when LENGTH is not given"),
    Setting("top", 10, _positive_int("top"), "rows MATCH returns when TOP is not given"),
    Setting("threshold", None, _threshold,
            "unit threshold: a number or 'value:0.5' (absolute), 'quantile:0.995', a band 'quantile:0.99..0.995' "
            "or 'value:0.5..2', or a cluster 'cluster:2/5'; 'default' uses the store's",
            ("default", "quantile:0.995")),
    Setting("device", "cpu", _device, "where tensors live: 'cpu' or 'cuda'", ("cpu", "cuda")),
    Setting("layer", None, _layer, "the unit layer that `unit N` refers to (default: the first)"),
    Setting("min_active", 500, _whole("min_active", 0),
            "text stores: SEARCH unit * skips units active on fewer samples (compexp: 500)"),
    Setting("memory_limit", default_limit(), parse_size,
            "bytes a statement may allocate, e.g. '4GB' or '512MB'; 'auto' is half the machine's memory",
            ("auto", "4GB", "512MB")),
    Setting("chunk_mb", 64, _positive_int("chunk_mb"), "memory bound for one chunk of the concept table"),
    Setting("distinct", False, _bool, "SEARCH keeps one beam entry per formula", ("on", "off")),
    Setting("engine", "batched", _engine,
            "SEARCH engine: 'batched' (all units at once) or 'plain' (the per-unit reference)", ("batched", "plain")),
    Setting("workers", "auto", _workers,
            "processes SEARCH ... EXACT spreads its units over: 'auto' (one per core, at most 8) or a number; "
            "1 keeps it in this process", ("auto", "1")),
    Setting("metric", "iou", _metric, "what SEARCH maximises and MATCH ranks by: " + ", ".join(metrics.CHOICES),
            tuple(metrics.CHOICES)),
]}


def check_setting(name: str, value: Any) -> Any:
    """The validated value for ``SET name = value``."""
    setting = SETTINGS.get(name.lower())
    if setting is None:
        raise NameResolutionError(f"unknown setting {name!r}", needle=name,
                                  hint=did_you_mean(name, SETTINGS) or "settings: " + ", ".join(SETTINGS))
    return setting.check(value)


def defaults() -> dict[str, Any]:
    return {name: s.default for name, s in SETTINGS.items()}
