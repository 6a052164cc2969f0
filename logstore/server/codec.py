"""The glue between Kafka's wire format and kio's generated schema classes.

Owns: a request's header (its version follows the API's flexible versions),
decoding a request body into kio's dataclass of that API and version, and
encoding a response that a handler gave as plain dicts and lists into the
dataclasses of the version asked for. Handlers speak one superset of every
version's fields; ``build`` keeps what the version has and drops the rest, so
no handler knows which field arrived in which version. Knows nothing of
logstore's storage or of sockets.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime
import enum
import functools
import io
import struct
import typing
import uuid
from typing import Any

from kio.index import load_payload_module
from kio.schema.errors import ErrorCode
from kio.schema.index import api_key_map
from kio.schema.request_header.v1.header import RequestHeader as RequestHeaderV1
from kio.schema.request_header.v2.header import RequestHeader as RequestHeaderV2
from kio.serial import entity_reader, entity_writer
from kio.static.constants import EntityType

__all__ = [
    "API_VERSIONS_KEY",
    "ErrorCode",
    "FETCH_KEY",
    "Frame",
    "Header",
    "ProtocolError",
    "build",
    "decode_header",
    "decode_request",
    "encode_response",
    "known_api",
    "known_version",
]

API_VERSIONS_KEY = 18
FETCH_KEY = 1
#: A response frame: one ``bytes``, or its consecutive pieces (a Fetch's records by
#: reference: ``bytes``, or stored batches with a ``len()`` the connection sends itself).
Frame = bytes | list[Any]
#: A write at least this large is kept by reference, not copied (records; nothing else is).
SPLICE_BYTES = 4096
#: Whether the connection serving this request sends ``FileRanges`` with ``sendfile``
#: (set per connection task; ``asyncio.to_thread`` carries it into the worker thread).
#: Outside a connection, or where it cannot (TLS), a Fetch reads bytes as it always did.
SENDFILE: contextvars.ContextVar[bool] = contextvars.ContextVar("sendfile", default=False)
_KEY_VERSION = struct.Struct(">hhi")
_EPOCH = datetime.datetime.fromtimestamp(0, datetime.timezone.utc)


class ProtocolError(Exception):
    """A frame that cannot be understood: the connection it came on is closed."""


@dataclasses.dataclass(frozen=True)
class Header:
    """What every request starts with, and where its body begins in the frame."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body_offset: int


def known_api(api_key: int) -> bool:
    """Whether kio (that is, Kafka's schemas) knows this API key at all."""
    return api_key in api_key_map


@functools.cache
def _module(api_key: int, version: int, kind: EntityType) -> Any:
    return load_payload_module(api_key, version, kind)  # type: ignore[arg-type]


@functools.cache
def _payload_class(api_key: int, version: int, kind: EntityType) -> type[Any] | None:
    """kio's request or response class of ``api_key`` at ``version``; ``None`` if unknown."""
    try:
        module = _module(api_key, version, kind)
    except Exception:  # kio raises its own index errors and ImportErrors alike
        return None
    for value in vars(module).values():
        if isinstance(value, type) and getattr(value, "__type__", None) is kind:
            return value
    return None


def known_version(api_key: int, version: int) -> bool:
    return _payload_class(api_key, version, EntityType.request) is not None


def decode_header(frame: bytes) -> Header:
    """Read the request header: v2 (tagged fields) for a flexible request, else v1.

    Raises:
        ProtocolError: the frame is too short or its header does not parse.
    """
    if len(frame) < _KEY_VERSION.size:
        raise ProtocolError(f"a request of {len(frame)} bytes has no header")
    api_key, version, correlation_id = _KEY_VERSION.unpack_from(frame)
    request = _payload_class(api_key, version, EntityType.request)
    flexible = bool(request is not None and request.__flexible__)
    header_class: type[Any] = RequestHeaderV2 if flexible else RequestHeaderV1
    try:
        header, size = entity_reader(header_class)(frame, 0)
    except Exception as exc:
        raise ProtocolError(f"unreadable request header: {exc}") from None
    return Header(api_key, version, correlation_id, header.client_id, size)


def decode_request(header: Header, frame: bytes) -> Any:
    """The request body as kio's dataclass of its API and version.

    Bytes after the body are ignored, as Kafka's broker ignores them:
    librdkafka 2.16's all-topics Metadata v12 carries three (an AdminClient's
    ``list_topics``), and refusing them cut off a client that Kafka serves.

    Raises:
        ProtocolError: the body does not parse.
    """
    cls = _payload_class(header.api_key, header.api_version, EntityType.request)
    if cls is None:
        raise ProtocolError(f"no schema for API {header.api_key} v{header.api_version}")
    try:
        request, _ = entity_reader(cls)(frame, header.body_offset)
    except Exception as exc:
        raise ProtocolError(
            f"unreadable {cls.__name__} v{header.api_version}: {type(exc).__name__}: {exc}"
        ) from None
    return request


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _entity_of(hint: Any) -> type[Any] | None:
    """The dataclass a field holds (alone, in a tuple, or optional), if any."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return hint
    for arg in typing.get_args(hint):
        found = _entity_of(arg)
        if found is not None:
            return found
    return None


@dataclasses.dataclass(frozen=True)
class _Field:
    """What ``build`` needs of one field of a kio class, worked out once per class."""

    name: str
    kafka_type: str | None
    #: The kio class this field holds (alone, in a tuple, or optional), if any.
    entity: type[Any] | None
    required: bool
    field: dataclasses.Field[Any]
    hint: Any


_PLANS: dict[type[Any], tuple[_Field, ...]] = {}


def _plan(cls: type[Any]) -> tuple[_Field, ...]:
    """``cls``'s fields with their types resolved: a response is built without introspection."""
    plan = _PLANS.get(cls)
    if plan is None:
        hints = _hints(cls)
        plan = _PLANS[cls] = tuple(
            _Field(
                f.name,
                f.metadata.get("kafka_type"),
                _entity_of(hints[f.name]),
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
                f,
                hints[f.name],
            )
            for f in dataclasses.fields(cls)
        )
    return plan


def _convert(spec: _Field, value: Any) -> Any:
    kafka_type, entity = spec.kafka_type, spec.entity
    if entity is not None and kafka_type is None:
        if value is None:
            return None
        if isinstance(value, dict):
            return build(entity, value)
        return tuple(v if dataclasses.is_dataclass(v) else build(entity, v) for v in value)
    if value is None:
        return None
    if kafka_type in ("timedelta_i32", "timedelta_i64") and isinstance(value, int):
        return datetime.timedelta(milliseconds=value)
    if kafka_type == "datetime_i64" and isinstance(value, int):
        return None if value < 0 else _EPOCH + datetime.timedelta(milliseconds=value)
    if kafka_type == "error_code" and not isinstance(value, ErrorCode):
        return ErrorCode(int(value))
    if kafka_type == "uuid" and isinstance(value, bytes):
        return uuid.UUID(bytes=value)
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, enum.Enum) and kafka_type != "error_code":
        return value.value
    return value


def build(cls: type[Any], values: dict[str, Any]) -> Any:
    """An instance of kio's ``cls`` from ``values``, keeping only the fields ``cls`` has.

    Nested dicts and lists of dicts become the nested classes of the same
    version; a field the handler did not give takes the schema's default, and
    a required one without a value gets its type's zero (an empty tuple, 0,
    an empty string), so one handler's answer fits every version.
    """
    kwargs: dict[str, Any] = {}
    for spec in _plan(cls):
        if spec.name in values:
            kwargs[spec.name] = _convert(spec, values[spec.name])
        elif spec.required:
            kwargs[spec.name] = _zero(spec.field, spec.hint)
    return cls(**kwargs)


def _zero(field: dataclasses.Field[Any], hint: Any) -> Any:
    kafka_type = field.metadata.get("kafka_type")
    if kafka_type in ("timedelta_i32", "timedelta_i64"):
        return datetime.timedelta(0)
    if kafka_type == "error_code":
        return ErrorCode.none
    if kafka_type == "string":
        return ""
    if kafka_type == "bool":
        return False
    if kafka_type == "uuid":
        return None
    if kafka_type in ("records", "bytes"):
        return b""
    if kafka_type is None or typing.get_origin(hint) is tuple:
        if _entity_of(hint) is not None and typing.get_origin(hint) is not tuple:
            entity = _entity_of(hint)
            assert entity is not None
            return build(entity, {})
        return ()
    return 0


def response_class(api_key: int, version: int) -> type[Any] | None:
    return _payload_class(api_key, version, EntityType.response)


def encode_response(
    api_key: int, version: int, correlation_id: int, body: dict[str, Any] | Any
) -> Frame:
    """A whole response frame: size, header (v1 when flexible, v0 for ApiVersions), body.

    ``body`` is a dict for ``build`` or an instance of kio's response class.
    A Fetch comes back as pieces (``SplicedFrame``): its records, MBs read
    from the store, are sent as they are, never copied into the frame.
    """
    cls = response_class(api_key, version)
    if cls is None:
        raise ProtocolError(f"no response schema for API {api_key} v{version}")
    message = body if isinstance(body, cls) else build(cls, body)
    if api_key == FETCH_KEY:
        spliced = SplicedFrame()
        _write_frame(spliced, cls, api_key, correlation_id, message)
        return spliced.pieces()
    out = io.BytesIO()
    _write_frame(out, cls, api_key, correlation_id, message)
    with out.getbuffer() as frame:
        struct.pack_into(">i", frame, 0, len(frame) - 4)
    # No view left on the buffer: BytesIO hands its bytes over instead of copying them.
    return out.getvalue()


def _write_frame(out: Any, cls: type[Any], api_key: int, correlation_id: int, message: Any) -> None:
    """The frame with a size of 0 (patched by the caller): header, then kio's body."""
    out.write(b"\0\0\0\0")
    out.write(struct.pack(">i", correlation_id))
    # ApiVersions answers with header v0 whatever its version: a client that
    # sent a version the broker does not know must still read the answer (KIP-511).
    if cls.__flexible__ and api_key != API_VERSIONS_KEY:
        out.write(b"\0")  # the header's tagged fields: none
    entity_writer(cls)(out, message)


class SplicedFrame:
    """A stream for kio's writers that keeps large ``bytes`` by reference.

        kio writes a records field as its length prefix, then ``write(value)``
        of the value itself: here a value of ``SPLICE_BYTES`` or more becomes a
        piece of its own, and the small writes around it are gathered into
        pieces between. So the bytes are exactly kio's encoding, in pieces, and
        a fetch's records are copied once less (the socket takes them as they
        are). Only immutable ``bytes`` are kept, and stored batches (``FileRanges``,
    whose held descriptors keep their bytes): nothing can change under them.
    """

    __slots__ = ("_pieces", "_size", "_small")

    def __init__(self) -> None:
        self._pieces: list[Any] = []
        self._small = bytearray()
        self._size = 0

    def write(self, data: Any) -> int:
        if (type(data) is bytes and len(data) >= SPLICE_BYTES) or not isinstance(
            data, (bytes, bytearray, memoryview)
        ):  # large bytes, or stored batches (FileRanges): by reference
            if self._small:
                self._cut()
            self._pieces.append(data)
            self._size += len(data)
        else:
            self._small += data
        return len(data)

    def _cut(self) -> None:
        self._size += len(self._small)
        self._pieces.append(bytes(self._small))
        self._small = bytearray()

    def pieces(self) -> list[Any]:
        """The frame's pieces, its size (it starts with 4 bytes for it) filled in."""
        if self._small or not self._pieces:
            self._cut()
        # The first piece is the header's (small writes come first): its 4 bytes are the size.
        self._pieces[0] = struct.pack(">i", self._size - 4) + self._pieces[0][4:]
        return self._pieces
