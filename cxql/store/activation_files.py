"""Reading saved activations (``numpy.save`` ``.npy`` or ``torch.save`` ``.pt``), safely.

The file's first bytes decide how it is read, not its name: ``.PT``,
``.pth`` or a ``.npy`` renamed ``acts.bin`` all load, and a text or CSV file
is called what it is instead of getting numpy's advice about pickles.
Nothing is ever unpickled: ``.npy`` is read with ``allow_pickle=False`` and
``.pt`` with ``weights_only=True``, and a file that holds other objects is
refused with one error naming it. Tensors in bfloat16 become float32
(exactly); sparse, quantized and complex ones are refused. Big
``.npy`` and zip-format ``.pt`` files are memory-mapped, not read. Only
regular files are opened: a named pipe would block forever.
"""

from __future__ import annotations

import os
import pickle
import stat
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .units import as_array

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_MAGIC = b"\x80"  # protocol 2+ pickles, torch's legacy (non-zip) format
SAVE_HINT = ("save activations with numpy.save (.npy) or torch.save (.pt) as one array or tensor, or a sparse "
             "[positions, units] matrix with scipy.sparse.save_npz")


def load_activations(path: str | Path) -> np.ndarray:
    """The activation array saved at ``path`` (.npy memory-mapped, or .pt), or a DataError naming it."""
    p = Path(path)
    try:
        mode = os.stat(p).st_mode  # links followed; nothing is opened yet
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read activations ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{path}: is a directory, not an activation file")
    if not stat.S_ISREG(mode):  # a named pipe would block open() until a writer comes, a device never ends
        raise DataError(f"{path}: not a regular file (a named pipe, socket or device); "
                        "activations must be saved in a file", hint=SAVE_HINT)
    try:
        with open(p, "rb") as f:
            head = f.read(8)
        if head.startswith(NPY_MAGIC):
            return np.load(p, mmap_mode="r", allow_pickle=False)
        if head.startswith(ZIP_MAGIC):
            if _is_npz(p):
                raise DataError(f"{path}: is an .npz archive of several arrays, not one array",
                                hint="save the array alone, e.g. numpy.save('acts.npy', acts), or a sparse "
                                     "matrix with scipy.sparse.save_npz")
            if not _is_torch_zip(p):
                raise DataError(f"{path}: is a zip archive, but neither a torch.save file nor an .npz of arrays",
                                hint=SAVE_HINT)
            return _tensor_to_array(_torch_load(p, mmap=True), path)
        if head.startswith(PICKLE_MAGIC):
            return _tensor_to_array(_torch_load(p, mmap=False), path)
    except DataError:
        raise
    except (ValueError, OSError, RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
        raise DataError(f"{path}: cannot read activations ({_first_line(exc)})", hint=SAVE_HINT) from None
    raise DataError(f"{path}: not a .npy or .pt file" + (" (it is empty)" if not head else ""), hint=SAVE_HINT)


def _is_npz(path: Path) -> bool:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return bool(names) and all(n.endswith(".npy") for n in names)


def _is_torch_zip(path: Path) -> bool:
    """torch.save's zip format: one top folder holding data.pkl (and the tensors' storages)."""
    with zipfile.ZipFile(path) as z:
        return any(n == "data.pkl" or n.endswith("/data.pkl") for n in z.namelist())


def _torch_load(path: Path, mmap: bool) -> Any:
    import torch

    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols are not the user's concern
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        detail = [line.strip() for line in str(exc).splitlines() if "GLOBAL" in line or "Unsupported" in line]
        raise DataError(f"{path}: refused: the file holds Python objects other than tensors, and cxql never "
                        "unpickles them" + (f" ({detail[0]})" if detail else ""), hint=SAVE_HINT) from None


def _tensor_to_array(value: Any, path: str | Path) -> np.ndarray:
    """A loaded tensor as a numpy array (bfloat16 widened to float32, which holds it exactly)."""
    import torch

    if isinstance(value, np.ndarray):
        return value
    if not isinstance(value, torch.Tensor):
        raise DataError(f"{path}: holds a {type(value).__name__}, not one tensor", hint=SAVE_HINT)
    if value.layout != torch.strided:
        raise DataError(f"{path}: holds a {str(value.layout).replace('torch.', '')} tensor; "
                        "save it dense (tensor.to_dense())")
    if value.is_quantized or value.is_complex():
        raise DataError(f"{path}: holds a tensor of dtype {str(value.dtype).replace('torch.', '')}; "
                        "activations must be real numbers")
    return as_array(value, str(path))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
