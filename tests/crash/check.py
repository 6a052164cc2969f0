"""Recover a crash state with logstore and compare it with what was acknowledged.

An operation is acknowledged at a crash point when its ``end`` marker lies
before it, in flight when only its ``begin`` does. The promises checked (under
``fsync="always"``; with ``"never"`` only the first two):

* the log (or broker) opens: any exception is a violation;
* no record appears that was never written: each record read equals one that an
  append begun before the crash point wrote at that offset (and, after an
  acknowledged truncation or topic deletion, one written after it);
* every acknowledged record is there with its offset, key and value, unless an
  operation begun before the crash point may remove it (retention up to the
  start offset that operation reached, an unacknowledged truncation, compaction
  of a key written again before it began);
* a topic whose creation was acknowledged exists (one whose deletion was
  acknowledged does not), and a committed offset is the last acknowledged
  commit's or the one in flight: never an older one, never one not committed,
  never past its partition's end.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import logstore
from logstore import Broker, Log

from .model import Op
from .workloads import BROKER_DIR, CONFIGS, LOG_DIR


@dataclass
class Operation:
    id: int
    op: str
    begin: int
    data: dict[str, Any]
    end: int | None = None
    end_data: dict[str, Any] = field(default_factory=dict)

    def begun(self, point: int) -> bool:
        return self.begin < point

    def acked(self, point: int) -> bool:
        return self.end is not None and self.end < point

    def in_flight(self, point: int) -> bool:
        return self.begun(point) and not self.acked(point)


def operations(ops: list[Op]) -> list[Operation]:
    """The workload's operations from the ``begin``/``end`` markers, in begin order."""
    out: dict[int, Operation] = {}
    for i, op in enumerate(ops):
        if op[0] != "mark":
            continue
        _, kind, data = op
        if kind == "begin":
            data = dict(data)
            op_id, name = data.pop("id"), data.pop("op")
            out[op_id] = Operation(op_id, name, i, data)
        else:
            entry = out[data["id"]]
            entry.end, entry.end_data = i, data
    return sorted(out.values(), key=lambda o: o.begin)


def _partition_logs(o: Operation) -> list[str]:
    """Log names whose records an operation removes wholesale (truncation, topic deletion)."""
    if o.op == "truncate":
        return [o.data["log"]]
    if o.op == "delete_topic":
        return [os.path.join(BROKER_DIR, f"{o.data['topic']}-{p}") for p in range(64)]
    return []


def _cut_from(o: Operation) -> int:
    return int(o.data.get("offset", 0))


class Expectation:
    """What the markers before ``point`` say about one log."""

    def __init__(
        self, name: str, history: list[Operation], point: int, *, fsync: str = "always"
    ) -> None:
        self.name, self.point = name, point
        # With "never" an acknowledged truncation may be undone as well.
        self.strict = fsync != "never"
        # With "interval" and "never" only what a flush covered is promised: offsets
        # below the flushed offset an acknowledged operation ("interval") or an
        # acknowledged close (both) reported.
        self.promised_below: int | None = None if fsync == "always" else 0
        mine = [o for o in history if o.begun(point)]
        self.versions: dict[int, list[tuple[int, bytes | None, bytes | None, bool]]] = defaultdict(
            list
        )  # offset -> (begin, key, value, acked)
        self.cuts: list[tuple[Operation, int]] = []  # (truncation or deletion, from offset)
        self.start_bound = 0
        self.compactions: list[int] = []
        for o in mine:
            if o.op == "append" and o.data["log"] == name:
                for offset, key, value in o.data["records"]:
                    self.versions[offset].append((o.begin, key, value, o.acked(point)))
            elif name in _partition_logs(o):
                self.cuts.append((o, _cut_from(o)))
            elif o.op == "compact" and o.data["log"] == name:
                self.compactions.append(o.begin)
            if (
                o.data.get("log") == name
                and o.acked(point)
                and self.promised_below is not None
                and (fsync == "interval" or o.op == "close")
            ):
                self.promised_below = max(self.promised_below, o.end_data.get("flushed", 0))
            if o.data.get("log") == name and o.end_data.get("start") is not None:
                # the start an operation begun before the crash reached (or will reach)
                self.start_bound = max(self.start_bound, o.end_data["start"])

    def _last_acked_cut(self, offset: int) -> int:
        """The end marker of the last acknowledged truncation/deletion covering ``offset``."""
        ends = [o.end for o, cut in self.cuts if o.acked(self.point) and cut <= offset]
        return max((e for e in ends if e is not None), default=-1)

    def allowed(self, offset: int) -> list[tuple[int, bytes | None, bytes | None, bool]]:
        if not self.strict:
            return self.versions.get(offset, [])
        after = self._last_acked_cut(offset)
        return [v for v in self.versions.get(offset, []) if v[0] > after]

    def removable(self, offset: int, key: bytes | None, value: bytes | None) -> bool:
        if offset < self.start_bound:
            return True
        if any(o.in_flight(self.point) and cut <= offset for o, cut in self.cuts):
            return True
        for began in self.compactions:
            if value is None:
                return True  # a tombstone may go once its key is compacted
            for later, versions in self.versions.items():
                if later > offset and any(v[1] == key and v[0] < began for v in versions):
                    return True
        return False

    def check(self, records: Iterable[logstore.Record]) -> list[str]:
        problems = []
        present: dict[int, tuple[bytes | None, bytes | None]] = {}
        last = -1
        for r in records:
            if r.offset <= last:
                problems.append(f"{self.name}: offset {r.offset} after {last}")
            last = r.offset
            present[r.offset] = (r.key, r.value)
            if not any((k, v) == (r.key, r.value) for _, k, v, _ in self.allowed(r.offset)):
                problems.append(
                    f"{self.name}: record at offset {r.offset} (key {r.key!r}) was never "
                    "written there"
                )
        for offset in sorted(self.versions):
            versions = self.allowed(offset)
            if not versions or not versions[-1][3]:
                continue  # the latest write at this offset was not acknowledged
            if self.promised_below is not None and offset >= self.promised_below:
                continue  # acknowledged, not yet flushed: "interval" does not promise it
            _, key, value, _ = versions[-1]
            if present.get(offset) == (key, value):
                continue
            if self.removable(offset, key, value):
                continue
            got = "missing" if offset not in present else f"holds key {present[offset][0]!r}"
            problems.append(f"{self.name}: acknowledged offset {offset} (key {key!r}) {got}")
        return problems


def check_state(workload: str, state_dir: str, history: list[Operation], point: int) -> list[str]:
    """Every violation of the promises in ``state_dir`` after a crash at ``point``."""
    try:
        if workload == "unsynced_file":
            return _check_raw_files(state_dir, history, point)
        if workload in ("broker", "new_topic"):
            return _check_broker(state_dir, history, point)
        return _check_log(workload, state_dir, history, point)
    except Exception as exc:  # any failure to open or read is a finding, not a crash
        return [f"{type(exc).__name__}: {exc}"]


def _check_log(workload: str, state_dir: str, history: list[Operation], point: int) -> list[str]:
    config = CONFIGS[workload]
    with Log.open(os.path.join(state_dir, LOG_DIR), config) as log:
        records = list(log.scan())
        start = log.start_offset
    problems = Expectation(LOG_DIR, history, point, fsync=config.fsync).check(records)
    if config.fsync == "always":
        # An acknowledged retention or delete_before stays done: the start never goes back.
        done = [
            o.end_data["start"]
            for o in history
            if o.op in ("retention", "delete_before") and o.acked(point)
        ]
        if done and start < max(done):
            problems.append(f"{LOG_DIR}: start offset {start} is back below {max(done)}")
    return problems


def _check_broker(state_dir: str, history: list[Operation], point: int) -> list[str]:
    problems: list[str] = []
    path = os.path.join(state_dir, BROKER_DIR)
    with Broker.open(path, CONFIGS["broker"], maintenance_interval_ms=None) as broker:
        topics = set(broker.topics())
        last_topic_op: dict[str, Operation] = {}
        for o in history:
            if o.begun(point) and o.op in ("create_topic", "delete_topic"):
                last_topic_op[o.data["topic"]] = o
        for name, o in sorted(last_topic_op.items()):
            if not o.acked(point):
                continue
            if o.op == "create_topic" and name not in topics:
                problems.append(f"topic {name}: creation acknowledged, topic missing")
            if o.op == "delete_topic" and name in topics:
                problems.append(f"topic {name}: deletion acknowledged, topic still there")
        ends: dict[tuple[str, int], int] = {}
        for name in sorted(topics):
            t = broker.topic(name)
            for p in range(t.partitions):
                log = t.partition(p)
                ends[(name, p)] = log.end_offset
                log_name = os.path.join(BROKER_DIR, f"{name}-{p}")
                problems += Expectation(log_name, history, point).check(log.scan())
        problems += _check_commits(broker.committed_offsets(), history, point, ends)
    return problems


def _check_commits(
    committed: dict[tuple[str, str, int], int],
    history: list[Operation],
    point: int,
    ends: dict[tuple[str, int], int],
) -> list[str]:
    problems = []
    # (group, topic, partition) -> offsets allowed now; the last acknowledged first.
    allowed: dict[tuple[str, str, int], list[int | None]] = {}
    for o in history:
        if not o.begun(point):
            continue
        if o.op == "commit":
            for tp, offset in o.data["positions"].items():
                topic, _, p = tp.rpartition("-")
                entry = (o.data["group"], topic, int(p))
                if o.acked(point):
                    allowed[entry] = [offset]
                else:
                    allowed.setdefault(entry, [None]).append(offset)
        elif o.op == "delete_topic":
            for entry in [e for e in allowed if e[1] == o.data["topic"]]:
                allowed[entry] = [None] if o.acked(point) else [*allowed[entry], None]
    for entry in sorted(set(committed) | set(allowed)):
        got = committed.get(entry)
        if got not in allowed.get(entry, [None]):
            problems.append(
                f"committed offset of {entry}: {got}, expected one of {allowed.get(entry)}"
            )
        end = ends.get(entry[1:])
        if got is not None and end is None:
            # it would apply to a topic of that name created later
            problems.append(f"committed offset of {entry}: {got}, but there is no such partition")
        if got is not None and end is not None and got > end:
            problems.append(f"committed offset of {entry}: {got} is past the log end {end}")
    return problems


def _check_raw_files(state_dir: str, history: list[Operation], point: int) -> list[str]:
    problems = []
    for o in history:
        if o.op == "raw_file" and o.acked(point):
            path = os.path.join(state_dir, o.data["path"])
            if not os.path.exists(path):
                problems.append(f"{o.data['path']}: acknowledged, missing")
            elif Path(path).read_bytes() != o.data["data"]:
                problems.append(f"{o.data['path']}: acknowledged, holds other bytes")
    return problems
