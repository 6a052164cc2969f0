"""Whether a segment's index files say what its ``.log`` says.

Indexes carry no checksum: each entry is compared with the batch it names,
for ``recover`` (an index to rebuild) and ``verify`` (every wrong entry). Reads
and writes nothing but the segment's files; changes nothing.
"""

from __future__ import annotations

from typing import NamedTuple

from .errors import CorruptLogError
from .index import OffsetIndex, TimeIndex
from .segment import Segment


class IndexMismatch(NamedTuple):
    """An index entry the ``.log`` contradicts: its file, its byte there, and why."""

    path: str
    position: int
    message: str


def index_mismatch(seg: Segment, index: OffsetIndex, tindex: TimeIndex, end: int) -> str | None:
    """The first entry of ``index`` or ``tindex`` the ``.log`` (up to ``end``) contradicts."""
    found = index_mismatches(seg, index, tindex, end)
    return found[0].message if found else None


def index_mismatches(
    seg: Segment, index: OffsetIndex, tindex: TimeIndex, end: int
) -> list[IndexMismatch]:
    """Every entry of ``index`` and ``tindex`` that the ``.log`` (up to ``end``) contradicts.

    Indexes carry no checksum, so every entry is compared with the batch it
    names: an offset-index entry ``(O, P)`` must sit on a batch boundary
    ``P`` whose batch ends at ``O``; a time-index entry ``(T, O)`` must name
    a batch ending at ``O`` whose largest timestamp is ``T``, the largest
    of the segment so far (the batch that first reached it). Entries past
    damage in the ``.log`` are not judged (the ``.log``'s own check reports
    it). Offset-index mismatches come first, each file's in entry order;
    each message names the file and the entry's byte position.
    """
    ends: dict[int, int] = {}  # batch position -> last offset
    running: dict[int, tuple[int, int]] = {}  # last offset -> (batch max ts, max so far)
    max_so_far = -1
    walked, walked_offset = 0, seg.base_offset
    try:
        for position, header in seg.iter_headers(0, end):
            ends[position] = header.last_offset
            max_so_far = max(max_so_far, header.max_timestamp)
            running[header.last_offset] = (header.max_timestamp, max_so_far)
            walked, walked_offset = position + header.size, header.next_offset
    except CorruptLogError:
        pass
    out: list[IndexMismatch] = []
    for i, (last_offset, position) in enumerate(index.as_list()):
        if position < walked and ends.get(position) != last_offset:
            found = (
                "no batch starts there"
                if position not in ends
                else f"the batch there ends at offset {ends[position]}"
            )
            at = i * index.ENTRY_SIZE
            out.append(
                IndexMismatch(
                    index.path,
                    at,
                    f"{index.path} at byte {at}: entry ({last_offset}, "
                    f"{position}) does not match the log: {found}",
                )
            )
    for i, (timestamp, offset) in enumerate(tindex.as_list()):
        if offset >= walked_offset:
            continue
        batch_ts, so_far = running.get(offset, (None, None))
        if (batch_ts, so_far) != (timestamp, timestamp):
            found = (
                f"no batch ends at offset {offset}"
                if batch_ts is None
                else f"the batch ending there has largest timestamp {batch_ts}, "
                f"the segment {so_far} so far"
            )
            at = i * tindex.ENTRY_SIZE
            out.append(
                IndexMismatch(
                    tindex.path,
                    at,
                    f"{tindex.path} at byte {at}: entry ({timestamp}, "
                    f"{offset}) does not match the log: {found}",
                )
            )
    return out


def wrong_index(seg: Segment) -> str | None:
    """Why this segment's index files are wrong (not sane, or contradicted by the log)."""
    try:
        index, tindex = seg.read_index_files()
    except CorruptLogError as exc:
        return str(exc)
    return index_mismatch(seg, index, tindex, seg.size)
