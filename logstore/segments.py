"""The set of a partition's segments: the sorted map, the active segment, and every change to it.

Owns Kafka's ``LogSegments``/``LocalLog`` operations, each crash-safe on its
own: roll (seal the active segment, create the next), remove (the one
``.deleted`` procedure: retention, ``delete_before``, truncation), replace
(the compaction swap of ``.cleaned`` outputs for their inputs) and truncate
(cut at an offset, newest segment first). Callers hold the log's lock.

Knows segments and files; not offsets checkpoints, retention rules,
compaction rounds, records or the ``Log``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sortedcontainers import SortedDict

from ._fs import CLEANED_SUFFIX, DELETED_SUFFIX, SWAP_SUFFIX, HandleCache, crash_point, fsync_dir
from .segment import Segment, SegmentSettings


class Segments:
    """A partition's segments by base offset; the last one is ``active``."""

    def __init__(
        self,
        directory: str,
        loaded: Sequence[Segment],
        *,
        settings: SegmentSettings,
        fsync: bool,
        handles: HandleCache | None,
        contiguous: bool,
    ) -> None:
        """Take over ``loaded`` (oldest first, at least one); the last becomes active.

        ``fsync`` is false for ``fsync="never"``: a roll then syncs nothing, and
        a handle with unsynced data may be closed by the handle cache.
        """
        self.directory = directory
        self._settings = settings
        self._fsync = fsync
        self._handles = handles
        self._contiguous = contiguous
        for seg in loaded:
            self.adopt(seg)
        self._map: SortedDict = SortedDict((s.base_offset, s) for s in loaded)
        self.active: Segment = loaded[-1]
        self.active.activate()

    def __iter__(self) -> Iterator[Segment]:
        return iter(self._map.values())

    def __len__(self) -> int:
        return len(self._map)

    def __getitem__(self, base_offset: int) -> Segment:
        seg: Segment = self._map[base_offset]
        return seg

    def get(self, base_offset: int) -> Segment | None:
        seg: Segment | None = self._map.get(base_offset)
        return seg

    def holds(self, seg: Segment) -> bool:
        """Whether ``seg`` (this very object) is still one of ours."""
        return self._map.get(seg.base_offset) is seg

    def sealed(self) -> list[Segment]:
        """Every segment but the active one, oldest first."""
        segs: list[Segment] = list(self._map.values())[:-1]
        return segs

    def snapshot(self, offset: int, end_offset: int) -> list[tuple[Segment, int, int]]:
        """Segments from the one holding ``offset``, each with its end position now.

        And with the offset its batches must stay below: the next segment's
        base offset, or ``end_offset`` for the last one.
        """
        segs = self._map
        if not segs:
            active = self.active
            return [(active, active.size, end_offset)]
        chosen = segs.values()[max(segs.bisect_right(offset) - 1, 0) :]
        bounds = [s.base_offset for s in chosen[1:]]
        bounds.append(end_offset)
        return [(s, s.size, bound) for s, bound in zip(chosen, bounds)]

    def bound(self, seg: Segment, end_offset: int) -> int:
        """The offset ``seg``'s batches stay below: the next segment's base, or ``end_offset``."""
        segs = self._map
        i = segs.index(seg.base_offset)
        return segs.values()[i + 1].base_offset if i + 1 < len(segs) else end_offset

    # ------------------------------------------------------------ changes

    def adopt(self, seg: Segment) -> None:
        """Put a segment's handle under the shared handle cache, if any.

        With ``fsync="never"`` nothing waits for an fsync, so even a handle with
        unsynced data may be closed.
        """
        seg.adopt(self._handles, keep_open_until_flushed=self._fsync)
        seg.contiguous = self._contiguous

    def add(self, base_offset: int) -> Segment:
        """Create the new active segment at ``base_offset``; durable once this returns."""
        new = Segment.create(
            self.directory,
            base_offset,
            settings=self._settings,
        )
        fsync_dir(self.directory)  # a crash before this loses only empty files
        self.adopt(new)
        self._map[base_offset] = new
        self.active = new
        return new

    def roll(self, next_offset: int) -> Segment:
        """Seal the active segment and create the next one at ``next_offset``.

        1. Seal: final time-index entry, indexes trimmed. A crash after this
           leaves a complete segment; recovery rebuilds nothing.
        2. Flush it (unless ``fsync="never"``) so the recovery point can pass it.
        3. Create the new segment's files and fsync the directory. A crash
           before the fsync loses only empty files.
        """
        old = self.active
        old.seal()
        if self._fsync:
            old.flush()  # its indexes were fsynced when sealed
        return self.add(next_offset)

    def remove(self, doomed: Sequence[Segment]) -> None:
        """Remove ``doomed`` from the map and delete their files, in the order given."""
        for seg in doomed:
            del self._map[seg.base_offset]
        self._mark_deleted(doomed)
        for seg in doomed:
            seg.delete_files()

    def _mark_deleted(self, doomed: Sequence[Segment]) -> None:
        """The one ``.deleted`` procedure: 1. rename each to ``.deleted`` (the next open
        deletes those), 2. fsync the directory; the caller unlinks them after."""
        if not doomed:
            return
        for seg in doomed:
            seg.detach()  # readers holding it keep reading
            seg.rename_with_suffix("", DELETED_SUFFIX)
        fsync_dir(self.directory)

    def replace(self, old: Sequence[Segment], new: Sequence[Segment]) -> None:
        """Replace ``old`` segments by the ``.cleaned`` ``new`` ones, crash-safely.

        1. ``.cleaned`` -> ``.swap``, highest base offset first. A crash before the
           last rename: recovery deletes the ``.swap`` files above the lowest
           ``.cleaned`` and every ``.cleaned``: the old segments stay.
        2. Old segments -> ``.deleted``. A crash here: recovery deletes them and
           the ``.swap`` files complete the replacement.
        3. ``.swap`` -> final names, then fsync the directory. A crash before the
           fsync: either names are seen, both complete.
        4. Unlink the ``.deleted`` files (readers holding them keep reading).
        """
        for seg in sorted(new, key=lambda s: -s.base_offset):
            seg.rename_with_suffix(CLEANED_SUFFIX, SWAP_SUFFIX)
        fsync_dir(self.directory)
        crash_point("swap-renamed")
        self._mark_deleted(old)
        crash_point("old-deleted")
        for seg in new:
            seg.rename_with_suffix(SWAP_SUFFIX, "")
        fsync_dir(self.directory)
        crash_point("swapped")
        for seg in old:
            seg.delete_files()
        for seg in old:
            del self._map[seg.base_offset]
        for seg in new:
            self.adopt(seg)
            self._map[seg.base_offset] = seg

    def truncate(self, offset: int, *, compression_level: int | None) -> None:
        """Drop every record at or after ``offset``; the last segment left becomes active.

        Whole segments go newest first: directory entries change in order, so a
        power loss part-way leaves the log cut at a segment boundary, never with
        a hole. An ``OSError`` leaves files partly cut (the caller must abandon).
        """
        doomed = [s for s in self._map.values() if s.base_offset >= offset]
        self.remove(doomed[::-1])
        if not self._map:
            self.add(offset)
            return
        seg = self._map.values()[-1]
        if seg is not self.active:
            seg.activate()
            self.active = seg
        seg.truncate_to_offset(offset, compression_level=compression_level)

    def reset(self, offset: int) -> None:
        """Delete every segment and start over empty at ``offset``."""
        self.remove(list(self._map.values()))
        self.add(offset)
