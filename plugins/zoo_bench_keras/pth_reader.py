"""Read a legacy (pre-zip) ``torch.save`` state dict into NumPy arrays without importing torch.

The Keras backend must load the EfficientNet-Lite0 weights on machines with only tensorflow or jax.
The format: three pickled headers, the pickled object whose tensors point at storages by key, the
sorted storage keys, then each storage as an int64 element count and raw little-endian data.
"""
from __future__ import annotations

import collections
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
          "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
          "ByteStorage": np.uint8, "BoolStorage": np.bool_}


class _TensorRef:
    def __init__(self, key: str, offset: int, size: tuple[int, ...], stride: tuple[int, ...]):
        self.key, self.offset, self.size, self.stride = key, offset, tuple(size), tuple(stride)


def _rebuild_tensor_v2(storage, offset, size, stride, *args):
    return _TensorRef(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    def __init__(self, fh, storage_types: dict[str, str]):
        super().__init__(fh)
        self.storage_types = storage_types

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in DTYPES:
            return name
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a state dict")

    def persistent_load(self, pid: Any) -> str:
        _, storage_type, key = pid[0], pid[1], pid[2]
        self.storage_types[key] = storage_type
        return key


def load_legacy_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The state dict at ``path`` as name -> array (float tensors stay float32)."""
    storage_types: dict[str, str] = {}
    with open(path, "rb") as fh:
        for _ in range(3):  # magic number, protocol version, system info: plain values only
            _Unpickler(fh, {}).load()
        obj = _Unpickler(fh, storage_types).load()
        keys = _Unpickler(fh, {}).load()
        storages = {}
        for key in keys:
            (count,) = struct.unpack("<q", fh.read(8))
            dtype = np.dtype(DTYPES[storage_types[key]])
            storages[key] = np.frombuffer(fh.read(count * dtype.itemsize), dtype=dtype)
    out = {}
    for name, ref in obj.items():
        data = storages[ref.key]
        itemsize = data.dtype.itemsize
        out[name] = np.lib.stride_tricks.as_strided(
            data[ref.offset:], shape=ref.size, strides=tuple(s * itemsize for s in ref.stride)).copy()
    return out
