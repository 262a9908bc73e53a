"""Each stored chunk of a compressed HDF5 dataset is checked to decode to no more than its size.

``DecodedBudget`` charges a chunk at its declared size, but HDF5's filters size their output from
the stream or from their own parameters, not from the chunk, and HDF5 does not check what they
return: the deflate filter grows its buffer until the stream ends (1 MB of zlib stream inflates
to 1 GiB, whatever a (1, 1, 64, 64) chunk declares); the LZ4, zstd, blosc, bitshuffle-LZ4/zstd
and szip filters allocate the size written in the stream's own header (an 8 kB zstd frame
decodes to 256 MiB for a 16 kB chunk); zfp, nbit and scaleoffset allocate what their filter
parameters (``cd_values``, stored in the message) declare (a zfp header declaring a 16384 x 16384
field for a 64 x 64 chunk crashed the process). Before HDF5 reads a dataset,
``check_chunk_streams`` checks its filter pipeline and, for a filter sized by its stream, reads
each stored chunk raw (``read_direct_chunk``, no filter runs) and checks what the outermost
filter would produce: deflate by inflating it in 1 MiB pieces that are thrown away, the others by
the size in their header (layouts: hdf5plugin's H5Zlz4.c, bshuf_h5filter.c, zstd's frame format
RFC 8878 section 3.1.1, blosc1's header, HDF5's H5Zszip.c: 4 bytes little endian; zfp's header
in H5Z-ZFP's cd_values: zfp_write_header's magic then zfp_field_metadata, bits LSB first).
Filters whose output cannot be bounded before they run are refused (``unbounded_filter``):
blosc2 (the size lives in a frame inside the stream), bzip2 and lzf (they grow their buffer
until the stream ends), the lossy SZ/SZ3/SPERR and any other, and a stream-sized filter under
another filter (its stream only exists once the outer filter ran). ``read_deflated`` reads an
image stored with deflate (LCLStreamer's gzip and gzip_with_shuffle) by inflating each chunk
once, bounded, itself.
"""

from __future__ import annotations

import zlib

import h5py
import numpy as np

from peaknet_serve.errors import DecodeError

FILTER_DEFLATE = 1
FILTER_SHUFFLE = 2
FILTER_FLETCHER32 = 3
FILTER_SZIP = 4
FILTER_NBIT = 5
FILTER_SCALEOFFSET = 6
FILTER_ZFP = 32013
FILTER_LZ4 = 32004
FILTER_BITSHUFFLE = 32008
FILTER_BLOSC = 32001
FILTER_ZSTD = 32015
#: bitshuffle's cd_values[4]: 2 = LZ4, 3 = zstd (a size header), 0 = none (output = input).
_BITSHUFFLE_COMPRESSED = (2, 3)
_PIECE = 1 << 20


def _pipeline(dset: h5py.Dataset) -> list[tuple[int, int, tuple[int, ...]]]:
    plist = dset.id.get_create_plist()
    return [plist.get_filter(i)[:3] for i in range(plist.get_nfilters())]


def read_deflated(dset: h5py.Dataset, dtype: np.dtype) -> np.ndarray | None:
    """``dset`` as a ``dtype`` array, read chunk by chunk and inflated here, each chunk to at most
    its size; None unless its filters are deflate alone or shuffle then deflate (H5Zshuffle.c's
    byte transposition, undone here). Raises ``DecodeError(reason="overlong_chunk")`` for a
    stream longer than its chunk and ``reason="corrupt"`` for one shorter.
    """
    codes = [code for code, _, _ in _pipeline(dset)]
    if dset.chunks is None or codes not in ([FILTER_DEFLATE], [FILTER_SHUFFLE, FILTER_DEFLATE]):
        return None
    shape, chunks, stored = dset.shape, dset.chunks, dset.dtype
    chunk_bytes = int(np.prod(chunks, dtype=np.int64)) * stored.itemsize
    declared = int(np.prod([-(-d // c) for d, c in zip(shape, chunks, strict=True)]))
    out = np.empty(shape, dtype=dtype)
    if dset.id.get_num_chunks() < declared:
        out[...] = dset.fillvalue
    deflate_bit, shuffle_bit = 1 << (len(codes) - 1), 1 if len(codes) == 2 else 0
    for i in range(dset.id.get_num_chunks()):
        info = dset.id.get_chunk_info(i)
        mask, raw = dset.id.read_direct_chunk(info.chunk_offset)
        data = (
            raw if mask & deflate_bit else _inflate(dset.name, info.chunk_offset, raw, chunk_bytes)
        )
        if len(data) != chunk_bytes:
            raise DecodeError(
                f"array {dset.name}: the stored chunk at {info.chunk_offset} decodes to "
                f"{len(data)} bytes, not the chunk's {chunk_bytes}",
                reason="corrupt",
            )
        block = np.frombuffer(data, dtype=np.uint8)
        if shuffle_bit and not mask & shuffle_bit and stored.itemsize > 1:
            block = block.reshape(stored.itemsize, -1).T.copy()
        block = block.view(stored).reshape(chunks)
        where = tuple(
            slice(o, min(o + c, d))
            for o, c, d in zip(info.chunk_offset, chunks, shape, strict=True)
        )
        out[where] = block[tuple(slice(0, w.stop - w.start) for w in where)]
    return out


def _inflate(name: str, offset: tuple[int, ...], raw: bytes, chunk_bytes: int) -> bytes:
    """The zlib stream ``raw`` inflated to at most ``chunk_bytes``; raises when it holds more."""
    inflater = zlib.decompressobj()
    data = inflater.decompress(raw, chunk_bytes)
    if inflater.unconsumed_tail and inflater.decompress(inflater.unconsumed_tail, 1):
        raise DecodeError(
            f"array {name}: the stored chunk at {offset} ({len(raw)} bytes) inflates to more than "
            f"the chunk's {chunk_bytes} bytes; refused before it is inflated whole",
            reason="overlong_chunk",
        )
    return data


def check_chunk_streams(name: str, dset: h5py.Dataset) -> None:
    """Refuse a dataset with a stored chunk that decodes to more than the chunk's size (plus room
    for an inner filter's headers), or whose filters cannot be bounded before they run. Raises
    ``DecodeError(reason="overlong_chunk")`` or ``DecodeError(reason="unbounded_filter")``."""
    if dset.chunks is None:
        return
    pipeline = _pipeline(dset)
    while pipeline and pipeline[-1][0] == FILTER_FLETCHER32:  # a checksum appended last
        pipeline.pop()
    if not pipeline:
        return
    chunk_bytes = int(np.prod(dset.chunks, dtype=np.int64)) * dset.dtype.itemsize
    bound = chunk_bytes + chunk_bytes // 16 + 4096
    for position, (code, _, values) in enumerate(pipeline):
        outermost = position == len(pipeline) - 1
        _check_filter(name, dset, code, values, outermost, chunk_bytes, bound)
    code, _, values = pipeline[-1]
    if not _compresses(code, values):
        return
    header_size = _HEADER_SIZE.get(code)
    outer_bit = 1 << (len(pipeline) - 1)
    for i in range(dset.id.get_num_chunks()):
        info = dset.id.get_chunk_info(i)
        if info.filter_mask & outer_bit:  # the outermost filter was skipped for this chunk
            continue
        _, raw = dset.id.read_direct_chunk(info.chunk_offset)
        size = _inflated_size(raw, bound) if header_size is None else header_size(raw)
        if size > bound:
            raise DecodeError(
                f"array {name}: the stored chunk at {info.chunk_offset} ({len(raw)} bytes) decodes "
                f"to {'more than ' if code == FILTER_DEFLATE else ''}{size} bytes, but a chunk of "
                f"{dset.chunks} {dset.dtype} holds {chunk_bytes}; refused before HDF5 inflates it",
                reason="overlong_chunk",
            )


def _compresses(code: int, values: tuple[int, ...]) -> bool:
    """Whether filter ``code`` sizes its output from its stream (bitshuffle without LZ4 or zstd
    only transposes bits: its output is its input's size)."""
    if code == FILTER_BITSHUFFLE:
        return len(values) >= 5 and values[4] in _BITSHUFFLE_COMPRESSED
    return code == FILTER_DEFLATE or code in _HEADER_SIZE


def _check_filter(
    name: str,
    dset: h5py.Dataset,
    code: int,
    values: tuple[int, ...],
    outermost: bool,
    chunk_bytes: int,
    bound: int,
) -> None:
    """Refuse one filter of ``dset``'s pipeline whose output size cannot be bounded, or whose
    parameters declare more than ``bound`` bytes (a chunk of ``chunk_bytes`` and some room)."""
    if code in (FILTER_SHUFFLE, FILTER_FLETCHER32):
        return  # their output is their input's size (less the checksum)
    declared = _DECLARED_SIZE.get(code)
    if declared is not None:
        size = declared(values)
        if size > bound:
            raise DecodeError(
                f"array {name}: its {_filter_name(dset, code)} filter's parameters declare "
                f"{size} bytes per chunk, but a chunk of {dset.chunks} {dset.dtype} holds "
                f"{chunk_bytes}; refused before HDF5 allocates it",
                reason="overlong_chunk",
            )
        return
    if code == FILTER_BITSHUFFLE and not _compresses(code, values):
        return  # bit transposition alone: its output is its input's size
    if _compresses(code, values) and outermost:
        return  # its stream is checked chunk by chunk
    where = "" if outermost else " under another filter"
    raise DecodeError(
        f"array {name}: its {_filter_name(dset, code)} filter (id {code}){where} sizes its "
        "output from data that cannot be checked before HDF5 runs it, so a small message could "
        "make it allocate without bound; refused. Send it uncompressed or with a filter the "
        "decoder bounds: gzip (with or without shuffle), LZ4, zstd, bitshuffle, blosc, szip or "
        "zfp (every compression LCLStreamer offers is among them)",
        reason="unbounded_filter",
    )


def _filter_name(dset: h5py.Dataset, code: int) -> str:
    plist = dset.id.get_create_plist()
    for i in range(plist.get_nfilters()):
        found, _, _, text = plist.get_filter(i)
        if found == code:
            return text.decode(errors="replace") or str(code)
    return str(code)


def _inflated_size(raw: bytes, bound: int) -> int:
    """Bytes the zlib stream ``raw`` inflates to, counted up to just past ``bound``."""
    inflater = zlib.decompressobj()
    data, total = raw, 0
    while data and not inflater.eof and total <= bound:
        total += len(inflater.decompress(data, _PIECE))
        data = inflater.unconsumed_tail
    return total


def _big_endian_size(raw: bytes) -> int:
    """LZ4 and bitshuffle-LZ4/zstd: the decoded size is the first 8 bytes, big endian (a header
    shorter than that is left to the filter to refuse)."""
    return int.from_bytes(raw[:8], "big") if len(raw) >= 8 else 0


def _blosc_size(raw: bytes) -> int:
    """blosc1: bytes 4-7 of the header, little endian."""
    return int.from_bytes(raw[4:8], "little") if len(raw) >= 8 else 0


def _zstd_size(raw: bytes) -> int:
    """A zstd frame's Frame_Content_Size; 0 where it is absent (the filter then refuses it)."""
    if len(raw) < 6 or raw[:4] != b"\x28\xb5\x2f\xfd":
        return 0
    descriptor = raw[4]
    single_segment = descriptor >> 5 & 1
    field = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
    start = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 3]
    if field == 0 or len(raw) < start + field:
        return 0
    value = int.from_bytes(raw[start : start + field], "little")
    return value + 256 if field == 2 else value


def _szip_size(raw: bytes) -> int:
    """szip (H5Zszip.c): the decoded size is the first 4 bytes, little endian."""
    return int.from_bytes(raw[:4], "little") if len(raw) >= 4 else 0


_HEADER_SIZE = {
    FILTER_LZ4: _big_endian_size,
    FILTER_BITSHUFFLE: _big_endian_size,
    FILTER_BLOSC: _blosc_size,
    FILTER_ZSTD: _zstd_size,
    FILTER_SZIP: _szip_size,
}

#: zfp_type -> bytes per value (zfp.h: int32, int64, float, double).
_ZFP_TYPE_SIZE = {1: 4, 2: 8, 3: 4, 4: 8}
_ZFP_MAGIC = 0x70667A  # "zfp", first byte lowest


def _zfp_size(values: tuple[int, ...]) -> int:
    """The field H5Z-ZFP decodes a chunk into, from the zfp header in ``cd_values[1:]`` (its
    bytes as H5Z-ZFP wrote them, or swapped, as it also tries); 0 when no header reads (the
    filter then fails before it allocates)."""
    words = values[1:]
    if len(words) < 3:
        return 0
    for order in ("little", "big"):
        bits = int.from_bytes(b"".join(w.to_bytes(4, order) for w in words), "little")
        if bits & 0xFFFFFF != _ZFP_MAGIC:
            continue
        meta = bits >> 32 & ((1 << 52) - 1)
        dims, packed = (meta >> 2 & 3) + 1, meta >> 4
        width = {1: 48, 2: 24, 3: 16, 4: 12}[dims]
        count = 1
        for axis in range(dims):
            count *= (packed >> (width * axis) & ((1 << width) - 1)) + 1
        return count * _ZFP_TYPE_SIZE[(meta & 3) + 1]
    return 0


def _nbit_size(values: tuple[int, ...]) -> int:
    """nbit (H5Znbit.c): elements (cd_values[2]) x datatype size (cd_values[4]), unless
    cd_values[1] says the chunk was stored as it is."""
    if len(values) < 5 or values[1]:
        return 0
    return values[2] * values[4]


def _scaleoffset_size(values: tuple[int, ...]) -> int:
    """scaleoffset (H5Zscaleoffset.c): elements (cd_values[2]) x datatype size (cd_values[4])."""
    return values[2] * values[4] if len(values) >= 5 else 0


_DECLARED_SIZE = {
    FILTER_ZFP: _zfp_size,
    FILTER_NBIT: _nbit_size,
    FILTER_SCALEOFFSET: _scaleoffset_size,
}
