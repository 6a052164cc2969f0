"""The compiled codec module, loaded once for every module that has a fast path.

``None`` when ``logstore._speedups`` was not built (no compiler when the
package was installed) or ``LOGSTORE_PURE=1`` asks for the pure-Python code.
Only the first case warns (``PureCodecWarning``, once, at import): the pure
codec gives the same bytes and records but is several times slower, and a
build that silently lost its compiler should not go unnoticed.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from .errors import CorruptLogError, LogStoreError
from .model import Record


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
    _speedups.configure(CorruptLogError, Record)  # the classes its errors and records take
    return _speedups


speedups: Any = _load()
