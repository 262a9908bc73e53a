"""LCLStreamer's timestamp forms, brought to one convention: uint64 ``(sec << 32) | ns``.

What arrives in the timestamp field depends on LCLStreamer's version and psana:

- ``packed``: uint64 / int64 ``(sec << 32) | ns``, psana's native event time (the convention kept).
- ``ns``: int64 nanoseconds since the Unix epoch.
- ``seconds``: float64 seconds (psana2's ``Psana2Timestamp`` casts psana's packed integer to
  float64, so a float above 2**32 is read as a packed value that went through a float).
- ``psana1``: the string ``"<sec>.<ns>"`` that ``Psana1Timestamp`` builds with ``str(sec) + "." +
  str(ns)``: the part after the dot is an integer count of nanoseconds, not a decimal fraction
  (``"5.1234"`` is 5 s + 1234 ns).

``"auto"`` tells them apart by dtype and size: strings are psana1; floats below 2**32 are seconds,
above it packed; unsigned integers are packed (psana's uint64); signed integers at or above 2**62
are packed (``sec >= 2**30``, i.e. after 2004 in Unix time, 2024 in psana2's 1990 epoch), below
it nanoseconds (LCLStreamer's int64; 2**62 ns is the year 2116). The packed
value keeps every nanosecond of the integer and string forms; a float carries what float64 holds.
Values that cannot be read (LCLStreamer fills a missing timestamp with NaN, -999 or "None") become
0. The seconds are whatever epoch the pusher used (psana2: 1990-01-01); nothing is shifted.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from peaknet_serve.errors import DecodeError

TimestampForm = Literal["auto", "packed", "ns", "seconds", "psana1"]

NS_PER_S = 1_000_000_000
PACKED_MIN = 1 << 62
"""Integers at or above this are packed ``(sec << 32) | ns`` under ``"auto"``."""


def pack(sec: np.ndarray, ns: np.ndarray) -> np.ndarray:
    """uint64 ``(sec << 32) | ns`` from non-negative integer seconds and nanoseconds."""
    return (sec.astype(np.uint64) << np.uint64(32)) | ns.astype(np.uint64)


def to_packed(values: np.ndarray, form: TimestampForm = "auto") -> tuple[np.ndarray, str]:
    """The timestamps as uint64 ``(sec << 32) | ns``, and the form they were read as.

    Args:
        values: (B,) as sent: integers, floats or strings.
        form: the form to read them as; ``"auto"`` decides as the module says.

    Raises:
        DecodeError(reason="bad_metadata"): a dtype that no form reads (booleans, bytes, ...).
    """
    arr = np.asarray(values)
    kind = arr.dtype.kind
    if form == "auto":
        form = _detect(arr)
    if form == "psana1" and kind in "US":
        return _from_psana1(arr.astype(str)), form
    if form in ("packed", "ns") and kind in "iu":
        ints = arr.astype(np.int64) if kind == "i" else arr
        good = ints >= 0
        out = np.zeros(arr.shape, dtype=np.uint64)
        if form == "packed":
            out[good] = ints[good].astype(np.uint64)
        else:
            g = ints[good].astype(np.int64)
            out[good] = pack(g // NS_PER_S, g % NS_PER_S)
        return out, form
    if form in ("seconds", "packed") and kind == "f":
        return _from_float(arr.astype(np.float64), packed=form == "packed"), form
    raise DecodeError(
        f"timestamp of dtype {arr.dtype} cannot be read as {form!r}; set "
        "decode.timestamp_format to the pusher's form (auto, packed, ns, seconds, psana1)",
        reason="bad_metadata",
    )


def _detect(arr: np.ndarray) -> TimestampForm:
    kind = arr.dtype.kind
    if kind in "US":
        return "psana1"
    if kind == "f":
        finite = arr[np.isfinite(arr)]
        return "packed" if finite.size and float(np.max(np.abs(finite))) >= 2.0**32 else "seconds"
    if kind == "u":
        return "packed"
    if kind == "i":
        return "packed" if arr.size and int(arr.max()) >= PACKED_MIN else "ns"
    return "auto"


def _from_float(arr: np.ndarray, *, packed: bool) -> np.ndarray:
    out = np.zeros(arr.shape, dtype=np.uint64)
    good = np.isfinite(arr) & (arr >= 0)
    if packed:
        good &= arr < 2.0**64
        out[good] = arr[good].astype(np.uint64)
        return out
    good &= arr < 2.0**32
    sec = np.floor(arr[good])
    ns = np.minimum(np.rint((arr[good] - sec) * NS_PER_S), NS_PER_S - 1)
    out[good] = pack(sec.astype(np.uint64), ns.astype(np.uint64))
    return out


def _from_psana1(arr: np.ndarray) -> np.ndarray:
    out = np.zeros(arr.shape, dtype=np.uint64)
    for i, text in enumerate(arr.ravel()):
        sec, dot, ns = str(text).strip().partition(".")
        if dot and sec.isdigit() and ns.isdigit() and int(ns) < NS_PER_S and int(sec) < 1 << 32:
            out.flat[i] = (int(sec) << 32) | int(ns)
    return out
