"""Codec id <-> compress/decompress for the records section of a batch.

Owns the stream formats Kafka uses (FORMAT.md section 4): gzip (RFC 1952,
written with mtime 0), zstd (one frame; read as a stream because Kafka's frames
may lack the content size), lz4 (frame format, independent 64 KiB blocks) and
snappy (xerial block framing). lz4 and snappy need optional packages. Knows
nothing of batches or files.

Every decompression is bounded by ``max_output`` so a hostile or damaged
stream cannot make it allocate without limit.
"""

from __future__ import annotations

import gzip
import struct
import threading
import zlib
from typing import Any

import zstandard

from .errors import CodecUnavailableError, CorruptLogError, ErrorKind

NONE, GZIP, SNAPPY, LZ4, ZSTD = 0, 1, 2, 3, 4
CODEC_IDS = {"none": NONE, "gzip": GZIP, "snappy": SNAPPY, "lz4": LZ4, "zstd": ZSTD}
CODEC_NAMES = {v: k for k, v in CODEC_IDS.items()}

#: Upper bound on one batch's decompressed records section.
MAX_DECOMPRESSED_BYTES = 256 << 20

_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = struct.Struct(">8sii")
_XERIAL_CHUNK = struct.Struct(">i")
_XERIAL_BLOCK = 32 * 1024

try:  # optional codecs
    import lz4.frame as _lz4frame
except ImportError:  # pragma: no cover - depends on the environment
    _lz4frame = None
try:
    import snappy as _snappy
except ImportError:  # pragma: no cover - depends on the environment
    _snappy = None

_local = threading.local()

#: libzstd's lowest level, ``ZSTD_minCLevel()`` (= -ZSTD_TARGETLENGTH_MAX, 1.4+);
#: ``zstandard`` does not export it, and raises anything lower to it silently.
ZSTD_MIN_LEVEL = -(1 << 17)


def level_range(name: str) -> tuple[int, int] | None:
    """The levels codec ``name`` accepts, inclusive; ``None`` if it has none.

    gzip: zlib's -1 (its default, 6), 0 (stored, no compression) .. 9; it
    refuses the rest. zstd: libzstd's whole range, ``ZSTD_MIN_LEVEL`` .. 22
    (negative levels are its fast modes, 0 its default, 3); ``zstandard``
    refuses more than 22. lz4: python-lz4's frame levels, 0 (fast) .. 16 (3 and
    up are high compression); it would silently take any other value as 16 or
    as a fast-mode acceleration, so those are not offered. snappy and none
    have no levels.
    """
    if name == "gzip":
        return -1, 9
    if name == "zstd":
        return ZSTD_MIN_LEVEL, int(zstandard.MAX_COMPRESSION_LEVEL)
    if name == "lz4":
        if _lz4frame is None:  # pragma: no cover - depends on the environment
            return 0, 16
        return int(_lz4frame.COMPRESSIONLEVEL_MIN), int(_lz4frame.COMPRESSIONLEVEL_MAX)
    return None


def is_available(name: str) -> bool:
    """Whether the codec ``name`` can be used in this interpreter."""
    if name == "lz4":
        return _lz4frame is not None
    if name == "snappy":
        return _snappy is not None and hasattr(_snappy, "decompress")
    return name in CODEC_IDS


def _zstd_compressor(level: int | None) -> Any:
    cache: dict[int | None, Any] = _local.__dict__.setdefault("zstd_c", {})
    ctx = cache.get(level)
    if ctx is None:
        ctx = cache[level] = zstandard.ZstdCompressor(level=3 if level is None else level)
    return ctx


def _zstd_decompressor() -> Any:
    ctx = getattr(_local, "zstd_d", None)
    if ctx is None:
        ctx = _local.zstd_d = zstandard.ZstdDecompressor()
    return ctx


def compress(codec: int, data: bytes, level: int | None = None) -> bytes:
    """Compress ``data`` (a records section) with ``codec``.

    A ``level`` outside the codec's range is one set for another codec (a
    batch rewritten by truncation or compaction keeps its own codec): the
    codec's default is used instead.
    """
    if level is not None:
        levels = level_range(CODEC_NAMES.get(codec, ""))
        if levels is None or not levels[0] <= level <= levels[1]:
            level = None
    if codec == ZSTD:
        return bytes(_zstd_compressor(level).compress(data))
    if codec == GZIP:
        return gzip.compress(data, compresslevel=6 if level is None else level, mtime=0)
    if codec == LZ4:
        _need(codec, _lz4frame)
        return bytes(
            _lz4frame.compress(
                data,
                compression_level=0 if level is None else level,
                block_size=_lz4frame.BLOCKSIZE_MAX64KB,
                block_linked=False,  # Kafka rejects linked blocks
                content_checksum=False,
                block_checksum=False,
                store_size=False,
            )
        )
    if codec == SNAPPY:
        _need(codec, _snappy)
        out = [_XERIAL_HEADER.pack(_XERIAL_MAGIC, 1, 1)]
        for start in range(0, len(data), _XERIAL_BLOCK):
            block = _snappy.compress(data[start : start + _XERIAL_BLOCK])
            out += (_XERIAL_CHUNK.pack(len(block)), block)
        return b"".join(out)
    if codec == NONE:
        return data
    raise CorruptLogError(f"unknown compression codec {codec}", kind=ErrorKind.UNSUPPORTED_CODEC)


def decompress(
    codec: int, data: bytes | memoryview, max_output: int = MAX_DECOMPRESSED_BYTES
) -> bytes:
    """Decompress a records section.

    Raises:
        CorruptLogError: the stream is bad, or the codec id is unknown.
        CodecUnavailableError: the codec (lz4, snappy) needs a package that is not installed.
    """
    try:
        if codec == ZSTD:
            return _zstd_decompress(data, max_output)
        if codec == GZIP:
            return _gzip_decompress(data, max_output)
        if codec == LZ4:
            _need(codec, _lz4frame)
            out = bytes(_lz4frame.decompress(bytes(data)))
        elif codec == SNAPPY:
            _need(codec, _snappy)
            out = _xerial_decompress(bytes(data), max_output)
        else:
            raise CorruptLogError(
                f"unknown compression codec {codec} (attributes bits 0-2)",
                kind=ErrorKind.UNSUPPORTED_CODEC,
            )
    except (CorruptLogError, CodecUnavailableError):
        raise
    except Exception as exc:  # each codec library raises its own types
        name = CODEC_NAMES.get(codec, str(codec))
        raise CorruptLogError(
            f"{name} stream does not decompress: {exc}", kind=ErrorKind.INVALID_RECORDS
        ) from None
    _check_size(out, max_output)
    return out


def _need(codec: int, module: object) -> None:
    """Refuse a codec whose optional package is missing: not damage, so not CorruptLogError."""
    if module is None:
        raise CodecUnavailableError(CODEC_NAMES[codec])


def _check_size(out: bytes, max_output: int) -> None:
    if len(out) > max_output:
        raise CorruptLogError(
            f"records section decompresses to more than {max_output} bytes",
            kind=ErrorKind.INVALID_RECORDS,
        )


def _zstd_decompress(data: bytes | memoryview, max_output: int) -> bytes:
    # Streaming, across frames: Kafka's frames may omit the content size.
    reader = _zstd_decompressor().stream_reader(bytes(data), read_across_frames=True)
    out = reader.read(max_output + 1)
    _check_size(out, max_output)
    return bytes(out)


def _gzip_decompress(data: bytes | memoryview, max_output: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    remaining = bytes(data)
    while remaining:  # concatenated members are legal
        d = zlib.decompressobj(wbits=31)
        chunk = d.decompress(remaining, max_output + 1 - total)
        total += len(chunk)
        chunks.append(chunk)
        if total > max_output:
            _check_size(b"".join(chunks), max_output)
        if not d.eof:
            raise CorruptLogError("gzip stream is truncated", kind=ErrorKind.INVALID_RECORDS)
        remaining = d.unused_data
    return b"".join(chunks)


def _xerial_decompress(data: bytes, max_output: int) -> bytes:
    if not data.startswith(_XERIAL_MAGIC):
        # snappy-java reads a payload without the magic as one raw block.
        return bytes(_snappy.decompress(data))
    if len(data) < _XERIAL_HEADER.size:
        raise CorruptLogError("xerial snappy header is truncated", kind=ErrorKind.INVALID_RECORDS)
    pos, out, total = _XERIAL_HEADER.size, [], 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise CorruptLogError(
                "xerial snappy chunk length is truncated", kind=ErrorKind.INVALID_RECORDS
            )
        (size,) = _XERIAL_CHUNK.unpack_from(data, pos)
        pos += 4
        if size < 0 or pos + size > len(data):
            raise CorruptLogError(
                f"xerial snappy chunk of {size} bytes overruns the stream",
                kind=ErrorKind.INVALID_RECORDS,
            )
        block = _snappy.decompress(data[pos : pos + size])
        total += len(block)
        if total > max_output:
            _check_size(block + b"\0" * max_output, max_output)
        out.append(block)
        pos += size
    return b"".join(out)
