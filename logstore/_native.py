"""The one native boundary: the compiled module and every compiled/pure pair.

``speedups`` is ``logstore._speedups``, loaded once for every module that has
a fast path, or ``None`` when it was not built (no compiler when the package
was installed) or ``LOGSTORE_PURE=1`` asks for the pure-Python code.
``PAIRS`` lists each function the compiled module exports with its
pure-Python twin, which takes the same arguments and gives the same results
and errors (``tests/test_native.py`` checks that on shared inputs); ``TYPES``
lists its types (``Message``, ``Record``) with their ``NamedTuple`` twins in
``model``, which takes the compiled ones when they are loaded. Knows no
codec: the twins are named, not imported (they import this module).
Only a failed build warns (``PureCodecWarning``, once, at import): the pure
codec gives the same bytes and records but is several times slower, and a
build that silently lost its compiler should not go unnoticed.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, NamedTuple

from .errors import CorruptLogError, LogStoreError


class PureCodecWarning(LogStoreError, UserWarning):
    """The compiled codec could not be imported, so the pure-Python one is in use."""


def _load() -> Any:
    if os.environ.get("LOGSTORE_PURE", "") not in ("", "0"):
        return None
    try:
        from . import _speedups  # type: ignore[attr-defined]
    except ImportError as exc:
        warnings.warn(
            PureCodecWarning(
                f"logstore: the compiled codec logstore._speedups could not be imported "
                f"({exc}); using the slower pure-Python codec. Reinstall with a C compiler "
                f"and the Python headers, or set LOGSTORE_PURE=1 to choose the pure codec."
            ),
            stacklevel=2,
        )
        return None
    # The class its errors take, and its own Record for the records it builds.
    _speedups.configure(CorruptLogError, _speedups.Record)
    return _speedups


speedups: Any = _load()


class Pair(NamedTuple):
    """A compiled function and its pure-Python twin (``module:function`` under logstore)."""

    compiled: str
    pure: str
    used_by: str


#: Every type of ``logstore._speedups`` with its pure-Python twin (``model:PyMessage``), which
#: takes the same arguments and behaves the same (``tests/test_message.py``); ``used_by``
#: says where the compiled one takes the twin's place.
TYPES: tuple[Pair, ...] = (
    Pair("Message", "model:PyMessage", "model.Message: append inputs"),
    Pair("Record", "model:PyRecord", "model.Record: decode_section's records, reads"),
)

#: Every function of ``logstore._speedups`` but ``configure`` (which hands it our classes).
#: The compiled ``encode_section`` also takes bare ``bytes`` values and ``(value, key)``
#: pairs (what ``check_messages`` lets through as they are), which ``validator.prepare``
#: turns into entries for its twin.
PAIRS: tuple[Pair, ...] = (
    Pair("encode_section", "recordcodec:_py_encode_section", "recordcodec.encode_section: appends"),
    Pair(
        "decode_section",
        "recordcodec:_py_decode_section_flat",
        "recordcodec._decode_section: reads",
    ),
    Pair(
        "check_messages", "recordcodec:_py_check_messages", "recordcodec.accepts_as_is: append_many"
    ),
    Pair("route", "partitioner:_py_route", "partitioner.route_many: Broker.append_many"),
    Pair("number", "partitioner:_py_number", "partitioner.number: Broker.append_many"),
    Pair("wrap", "consumer:_py_wrap", "consumer.wrap: Consumer.poll"),
    Pair("accumulator", "accumulator:_PyAccumulator", "accumulator.accumulator: Producer.send"),
    Pair("read_stored", "batchfile:_py_read_stored", "BatchFile.read_stored: Log.read_batches"),
)
