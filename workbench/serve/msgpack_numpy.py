"""msgpack with numpy arrays, byte-compatible with openpi's `msgpack_numpy` (which upstream vendors).

An array travels as a map with binary (bytes) keys:
    {b"__ndarray__": True, b"data": <raw bytes, C order>, b"dtype": dtype.str (e.g. "<f4", "|u1"), b"shape": [..]}
and a numpy scalar as {b"__npgeneric__": True, b"data": <python value>, b"dtype": dtype.str}.
Object, void and complex dtypes are refused (openpi does the same: msgpack-numpy, the PyPI package,
falls back to pickle for object arrays, which must never be unpacked from the network).

Decoding also accepts str keys ("__ndarray__"), and checks that the byte count matches dtype and
shape, so a malformed array is a clear error rather than a garbled one.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

_REFUSED_KINDS = ("O", "V", "c")


class ArrayDecodeError(ValueError):
    """A map marked as an ndarray could not be turned back into one."""


def _check_dtype(dtype: np.dtype) -> None:
    if dtype.kind in _REFUSED_KINDS:
        raise TypeError(
            f"numpy dtype {dtype} cannot be sent (object/void/complex); convert to a numeric dtype"
        )


def pack_array(obj: Any) -> Any:
    """msgpack `default` hook: numpy arrays and scalars to maps; anything else is msgpack's error."""
    if isinstance(obj, np.ndarray):
        _check_dtype(obj.dtype)
        arr = np.ascontiguousarray(obj)
        return {b"__ndarray__": True, b"data": arr.tobytes(), b"dtype": arr.dtype.str, b"shape": arr.shape}
    if isinstance(obj, np.generic):
        _check_dtype(obj.dtype)
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot serialise object of type {type(obj).__name__} with msgpack")


def _get(obj: dict, key: str) -> Any:
    return obj[key.encode()] if key.encode() in obj else obj.get(key)


def unpack_array(obj: dict) -> Any:
    """msgpack `object_hook`: maps marked as arrays back to numpy (writable copies)."""
    if _get(obj, "__ndarray__") is True:
        try:
            dtype = np.dtype(_get(obj, "dtype"))
            _check_dtype(dtype)
            shape = tuple(int(s) for s in _get(obj, "shape"))
            data = _get(obj, "data")
            if not isinstance(data, bytes) or len(data) != dtype.itemsize * int(np.prod(shape)):
                raise ArrayDecodeError(f"ndarray data has the wrong size for dtype {dtype} and shape {shape}")
            return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
        except (TypeError, ValueError) as e:
            raise ArrayDecodeError(f"malformed ndarray in message: {e}") from e
    if _get(obj, "__npgeneric__") is True:
        try:
            dtype = np.dtype(_get(obj, "dtype"))
            _check_dtype(dtype)
            return dtype.type(_get(obj, "data"))
        except (TypeError, ValueError) as e:
            raise ArrayDecodeError(f"malformed numpy scalar in message: {e}") from e
    return obj


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, default=pack_array, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    # raw=False: msgpack str -> Python str, bin -> bytes (so array keys stay b"__ndarray__", as openpi's).
    return msgpack.unpackb(data, object_hook=unpack_array, raw=False)
