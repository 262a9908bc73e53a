"""Malformed LCLStreamer messages of known kinds, for the decoder's tests and the soak script.

Each kind is one way a pusher, a network or an attacker can get a message wrong; ``KINDS`` maps
its name to the reasons the decoder may give it with the default configuration
(the bombs declare 4 GiB, four times the default ``decode.max_decoded_bytes``).
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Callable

import h5py
import hdf5plugin
import numpy as np

from peaknet_serve.wire.decode import HDF5_SIGNATURE
from peaknet_serve.wire.encode import encode_batch

BOMB_SHAPE = (16, 1, 8192, 8192)


def good_message(
    rng: np.random.Generator,
    *,
    frames: int = 2,
    shape: tuple[int, int] = (16, 16),
    fmt: str = "hdf5",
    first: int = 0,
) -> bytes:
    """A well-formed batch of ``frames`` float32 frames with wavelength and timestamps."""
    return encode_batch(
        {
            "/data/data": rng.random((frames, 1, *shape), dtype=np.float32),
            "/data/wavelength": np.full(frames, 0.13),
            "/data/timestamp": np.arange(first, first + frames, dtype=np.uint64),
        },
        fmt=fmt,
    )


def raw_hdf5(fields: dict[str, np.ndarray]) -> bytes:
    """An in-memory HDF5 file of ``fields`` as given (the encoder refuses inconsistent ones)."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        for path, value in fields.items():
            handle.create_dataset(path, data=value)
    return buffer.getvalue()


def raw_npz(fields: dict[str, np.ndarray], *, compressed: bool = False) -> bytes:
    """An NPZ archive of ``fields`` as given, keyed by each path's last component."""
    buffer = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    save(buffer, **{path.rsplit("/", 1)[-1]: value for path, value in fields.items()})
    return buffer.getvalue()


def hdf5_bomb() -> bytes:
    """~3 kB of HDF5 declaring a (16, 1, 8192, 8192) float32 image: 4 GiB of fill value."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        handle.create_dataset(
            "/data/data",
            shape=BOMB_SHAPE,
            dtype="float32",
            chunks=(1, 1, 512, 512),
            compression="gzip",
        )
    return buffer.getvalue()


def npz_bomb(*, compressed: bool) -> bytes:
    """An NPZ whose image member's .npy header declares (16, 1, 8192, 8192) float32: 4 GiB
    declared over 512 bytes of data (deflated: the whole archive is a few hundred bytes)."""
    npy = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": BOMB_SHAPE}
    np.lib.format.write_array_header_1_0(npy, header)
    npy.write(bytes(512))
    out = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(out, "w", compression=method) as zf:
        zf.writestr("data.npy", npy.getvalue())
    return out.getvalue()


def zero_itemsize_field(elements: int = 2**40) -> bytes:
    """A good 2-frame NPZ beside a member whose .npy header declares ``(2, elements)`` of
    ``|V0``: zero bytes declared, yet indexing its rows walks every element."""
    npy = io.BytesIO()
    header = {"descr": "|V0", "fortran_order": False, "shape": (2, elements)}
    np.lib.format.write_array_header_1_0(npy, header)
    out = io.BytesIO(good_message(np.random.default_rng(0), fmt="npz"))
    with zipfile.ZipFile(out, "a") as zf:
        zf.writestr("junk.npy", npy.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def chunk_bomb(
    chunk: tuple[int, ...] = (1, 1, 16384, 32768), stream: bytes = b"\x78\x01garbage"
) -> bytes:
    """A (2, 1, 64, 64) float32 image (32 kB declared), with timestamps, in gzip chunks of
    ``chunk``, each stored as ``stream``: HDF5 inflates a whole chunk to read any of it. By
    default 2 GiB chunks holding a few garbage bytes: it is refused before they are read."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        dset = handle.create_dataset(
            "/data/data",
            shape=(2, 1, 64, 64),
            maxshape=(None, 1, None, None),
            chunks=chunk,
            dtype="float32",
            compression="gzip",
        )
        for i in range(2):
            dset.id.write_direct_chunk((i, 0, 0, 0), stream)
        handle.create_dataset("/data/timestamp", data=np.arange(2, dtype=np.uint64))
    return buffer.getvalue()


def tiny_chunks(
    shape: tuple[int, ...] = (16, 1, 256, 256), chunk: tuple[int, ...] = (1, 1, 1, 1)
) -> bytes:
    """A uint16 image of ``shape`` declared in chunks of ``chunk``, one pixel (7) written, with
    timestamps: a few kB. By default 1M one-pixel chunks, which HDF5 needs 4 GB of bookkeeping
    to read."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        dset = handle.create_dataset("/data/data", shape=shape, chunks=chunk, dtype="uint16")
        dset[0, 0, 0, 0] = 7
        handle.create_dataset("/data/timestamp", data=np.arange(shape[0], dtype=np.uint64))
    return buffer.getvalue()


def overlong_chunks(compression: str = "gzip") -> bytes:
    """A (2, 1, 64, 64) float32 image in honest 16 kB chunks whose stored streams decode to 4 MiB
    (``compression``: 'gzip' or 'zstd'): HDF5's filters size their output from the stream."""
    if compression == "gzip":
        filters: dict = {"compression": "gzip"}
        stream = zlib.compress(bytes(4 << 20), 9)
    else:
        filters = dict(hdf5plugin.Zstd())
        big = io.BytesIO()
        with h5py.File(big, "w") as handle:
            whole = handle.create_dataset("x", data=np.zeros(1 << 20, "f4"), **filters)
            stream = whole.id.read_direct_chunk((0,))[1]
    return raw_chunks(filters, stream)


def raw_chunks(filters: dict, stream: bytes) -> bytes:
    """A (2, 1, 64, 64) float32 image in one-event chunks (16 kB), with timestamps, whose stored
    chunks are ``stream``, written raw under the dataset's ``filters`` (h5py keywords)."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        dset = handle.create_dataset(
            "/data/data", shape=(2, 1, 64, 64), chunks=(1, 1, 64, 64), dtype="float32", **filters
        )
        for i in range(2):
            dset.id.write_direct_chunk((i, 0, 0, 0), stream)
        handle.create_dataset("/data/timestamp", data=np.arange(2, dtype=np.uint64))
    return buffer.getvalue()


def _image_chunks(filters: dict, stream: bytes | None = None) -> bytes:
    """A (2, 1, 64, 64) float32 image (zeros) in one-event chunks under ``filters``; each
    stored chunk is ``stream`` when given (written raw)."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        dset = handle.create_dataset(
            "/data/data", shape=(2, 1, 64, 64), chunks=(1, 1, 64, 64), dtype="float32", **filters
        )
        if stream is None:
            dset[...] = 0.0
        else:
            for i in range(2):
                dset.id.write_direct_chunk((i, 0, 0, 0), stream)
    return buffer.getvalue()


def _raw_stream(filters: dict, data: np.ndarray) -> bytes:
    """``data``, one chunk, as ``filters`` store it."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        dset = handle.create_dataset("x", data=data, chunks=data.shape, **filters)
        return dset.id.read_direct_chunk((0,) * data.ndim)[1]


def overlong_szip_chunks() -> bytes:
    """~70 kB: honest 16 kB chunks whose szip streams say (first 4 bytes) and hold 1 MiB."""
    zeros = np.zeros((4096, 64), np.float32)  # 64 pixels a row, as the image's chunks
    return _image_chunks({"compression": "szip"}, _raw_stream({"compression": "szip"}, zeros))


def zfp_declared_field() -> bytes:
    """A zfp image whose filter parameters (H5Z-ZFP keeps the zfp header in ``cd_values``) are
    those of a 16384 x 16384 chunk: H5Z-ZFP allocates that 1 GiB field for each 16 kB chunk
    (and then reads the short stream past its end: the process crashed)."""
    filters = dict(hdf5plugin.Zfp())
    message = _image_chunks(filters)

    def header(shape: tuple[int, ...]) -> bytes:
        buffer = io.BytesIO()
        with h5py.File(buffer, "w") as handle:  # chunked, never written: nothing allocated
            dset = handle.create_dataset("x", shape=shape, chunks=shape, dtype="f4", **filters)
            values = dset.id.get_create_plist().get_filter(0)[2]
        return b"".join(v.to_bytes(4, "little") for v in values)

    honest, big = header((1, 1, 64, 64)), header((1, 1, 16384, 16384))
    assert message.count(honest) == 1
    return message.replace(honest, big)


def blosc2_chunks() -> bytes:
    """Honest-shaped chunks holding a blosc2 frame of 4 MiB of zeros (about 200 bytes): the
    blosc2 filter allocates what a chunk inside the frame declares."""
    filters = dict(hdf5plugin.Blosc2())
    return _image_chunks(filters, _raw_stream(filters, np.zeros(1 << 20, np.float32)))


def long_strings(events: int = 2000, longest: int = 160_000) -> bytes:
    """``events`` 4x4 frames with a variable-length string field, one element ``longest``
    characters long (the others empty): as a fixed-width str array, events x longest x 4 bytes
    (1.3 GB by default)."""
    notes = np.empty(events, dtype=object)
    notes[:] = ""
    notes[0] = "x" * longest
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        handle.create_dataset("/data/data", data=np.zeros((events, 1, 4, 4), np.float32))
        handle.create_dataset("/data/note", data=notes, dtype=h5py.string_dtype())
    return buffer.getvalue()


def many_fields(n: int = 300) -> bytes:
    """A good 2-frame image beside ``n`` tiny per-event datasets."""
    fields = {"/data/data": np.zeros((2, 1, 8, 8), np.float32)}
    fields |= {f"/extra/f{i}": np.zeros(2, np.uint8) for i in range(n)}
    return raw_hdf5(fields)


def external_storage(path: str = "/etc/hostname") -> bytes:
    """A dataset whose raw data is a file of the receiving host (HDF5 external storage)."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        handle.create_dataset("/data/data", data=np.zeros((2, 1, 8, 8), np.float32))
        handle.create_dataset("/data/leak", shape=(2, 4), dtype="u1", external=[(path, 0, 8)])
    return buffer.getvalue()


def _zero_events(fmt: str) -> bytes:
    fields = {"/data/data": np.zeros((0, 1, 8, 8), np.float32)}
    return raw_npz(fields) if fmt == "npz" else raw_hdf5(fields)


def _mismatched(fmt: str) -> bytes:
    fields = {
        "/data/data": np.zeros((3, 8, 8), np.float32),
        "/data/timestamp": np.arange(5, dtype=np.uint64),
    }
    return raw_npz(fields) if fmt == "npz" else raw_hdf5(fields)


def _odd_dtype(fmt: str) -> bytes:
    fields = {"/data/data": np.zeros((2, 8, 8), np.complex64)}
    return raw_npz(fields) if fmt == "npz" else raw_hdf5(fields)


def _truncated(fmt: str) -> bytes:
    whole = good_message(np.random.default_rng(0), fmt=fmt)
    return whole[: len(whole) // 2]


#: kind -> (builder, the decoder's reason). Every builder is deterministic.
KINDS: dict[str, tuple[Callable[[], bytes], frozenset[str]]] = {
    "empty": (lambda: b"", frozenset({"empty"})),
    "wrong_magic": (lambda: b"GIF89a" + bytes(64), frozenset({"unknown_format"})),
    "hdf5_signature_only": (lambda: HDF5_SIGNATURE, frozenset({"truncated", "corrupt"})),
    "truncated_hdf5": (lambda: _truncated("hdf5"), frozenset({"truncated", "corrupt"})),
    "truncated_npz": (lambda: _truncated("npz"), frozenset({"truncated", "corrupt"})),
    "hdf5_bomb": (hdf5_bomb, frozenset({"too_large_decoded"})),
    "npz_bomb": (lambda: npz_bomb(compressed=False), frozenset({"too_large_decoded"})),
    "npz_bomb_compressed": (
        lambda: npz_bomb(compressed=True),
        frozenset({"too_large_decoded"}),
    ),
    "mismatched_lengths_hdf5": (lambda: _mismatched("hdf5"), frozenset({"length_mismatch"})),
    "mismatched_lengths_npz": (lambda: _mismatched("npz"), frozenset({"length_mismatch"})),
    "odd_dtype_hdf5": (lambda: _odd_dtype("hdf5"), frozenset({"unsupported_dtype"})),
    "odd_dtype_npz": (lambda: _odd_dtype("npz"), frozenset({"unsupported_dtype"})),
    "zero_events_hdf5": (lambda: _zero_events("hdf5"), frozenset({"empty_batch"})),
    "zero_events_npz": (lambda: _zero_events("npz"), frozenset({"empty_batch"})),
    "chunk_bomb": (chunk_bomb, frozenset({"too_large_chunk"})),
    "many_fields": (many_fields, frozenset({"too_many_fields"})),
    "tiny_chunks": (tiny_chunks, frozenset({"too_many_chunks"})),
    "overlong_gzip_chunks": (overlong_chunks, frozenset({"overlong_chunk"})),
    "overlong_zstd_chunks": (lambda: overlong_chunks("zstd"), frozenset({"overlong_chunk"})),
    "overlong_szip_chunks": (overlong_szip_chunks, frozenset({"overlong_chunk"})),
    "zfp_declared_field": (zfp_declared_field, frozenset({"overlong_chunk"})),
    "blosc2_chunks": (blosc2_chunks, frozenset({"unbounded_filter"})),
    "long_strings": (long_strings, frozenset({"too_large_decoded"})),
    "external_storage": (external_storage, frozenset({"external_storage"})),
    "zero_itemsize_field": (zero_itemsize_field, frozenset({"unsupported_dtype"})),
}


def malformed_messages(n: int) -> list[tuple[str, bytes]]:
    """``n`` malformed messages, cycling through ``KINDS`` (each built once)."""
    built = [(kind, build()) for kind, (build, _) in KINDS.items()]
    return [built[i % len(built)] for i in range(n)]
