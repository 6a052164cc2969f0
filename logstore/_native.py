"""The compiled codec module, loaded once for every module that has a fast path.

``None`` when ``logstore._speedups`` was not built (no compiler when the
package was installed) or ``LOGSTORE_PURE=1`` asks for the pure-Python code.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import CorruptLogError
from .model import Record


def _load() -> Any:
    if os.environ.get("LOGSTORE_PURE", "") not in ("", "0"):
        return None
    try:
        from . import _speedups  # type: ignore[attr-defined]
    except ImportError:
        return None
    _speedups.configure(CorruptLogError, Record)  # the classes its errors and records take
    return _speedups


speedups: Any = _load()
