"""The crash model: which directory trees a power loss during a trace can leave.

``annotate`` turns the tracer's events into operations on inodes (resolved
against the tree the process saw), each owned by the file or directory whose
fsync makes it durable:

    ("link", dir, name, inode, is_dir)   create or mkdir      owner: dir
    ("rename", dir, src, dst)            within one directory owner: dir
    ("unlink", dir, name)                unlink or rmdir      owner: dir
    ("write", inode, position, data)                          owner: inode
    ("trunc", inode, size)               ftruncate, O_TRUNC   owner: inode
    ("fsync", inode)                     a file or a directory
    ("mark", kind, data)                 the workload's markers

A power loss after the first ``k`` operations keeps everything each owner had
fsynced, and of what came after its last fsync a prefix of its operations, in
order (POSIX promises nothing more; ext4 and xfs give no less): a directory
keeps a prefix of its entry changes, a file a prefix of its writes and
truncations, and the first write it loses may be torn: kept up to a 512- or
4096-byte boundary, or (a size update that overtook the data) with the file's
new size but zeros from a 512-byte boundary on. ``crash_states`` picks, for each
crash point, the state where everything reached the disk, the one where nothing
unsynced did, each owner losing its unsynced operations alone, torn writes, and
random combinations; ``materialise`` writes one state to a directory.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

Op = tuple[Any, ...]
ROOT = 0
SECTOR, PAGE = 512, 4096


def annotate(events: list[tuple[Any, ...]]) -> list[Op]:
    """Resolve the tracer's paths and fds to inodes; see the module docstring."""
    paths: dict[str, int] = {".": ROOT}
    fds: dict[int, int] = {}
    next_inode = 1
    ops: list[Op] = []

    def split(rel: str) -> tuple[int, str]:
        parent, name = os.path.split(rel)
        return paths[parent or "."], name

    for event in events:
        kind = event[0]
        if kind == "mark":
            ops.append(event)
        elif kind == "open":
            _, rel, flags, fd, existed, _ = event
            if not existed:
                assert flags & os.O_CREAT, event
                inode, next_inode = next_inode, next_inode + 1
                ops.append(("link", *split(rel), inode, False))
                paths[rel] = inode
            else:
                inode = paths[rel]
                if flags & os.O_TRUNC:
                    ops.append(("trunc", inode, 0))
            fds[fd] = inode
        elif kind == "close":
            fds.pop(event[1], None)
        elif kind == "write":
            ops.append(("write", fds[event[1]], event[2], event[3]))
        elif kind == "ftruncate":
            ops.append(("trunc", fds[event[1]], event[2]))
        elif kind == "truncate":
            ops.append(("trunc", paths[event[1]], event[2]))
        elif kind == "fsync":
            ops.append(("fsync", fds[event[1]]))
        elif kind == "mkdir":
            inode, next_inode = next_inode, next_inode + 1
            ops.append(("link", *split(event[1]), inode, True))
            paths[event[1]] = inode
        elif kind == "rename":
            src, dst = event[1], event[2]
            directory, src_name = split(src)
            dst_directory, dst_name = split(dst)
            assert directory == dst_directory, f"rename across directories: {src} -> {dst}"
            ops.append(("rename", directory, src_name, dst_name))
            moved = {p: i for p, i in paths.items() if p == src or p.startswith(src + "/")}
            for p in moved:
                del paths[p]
            for p in [p for p in paths if p == dst or p.startswith(dst + "/")]:
                del paths[p]
            for p, i in moved.items():
                paths[dst + p[len(src) :]] = i
        elif kind in ("unlink", "rmdir"):
            ops.append(("unlink", *split(event[1])))
            for p in [p for p in paths if p == event[1] or p.startswith(event[1] + "/")]:
                del paths[p]
        else:  # pragma: no cover - the tracer records nothing else
            raise AssertionError(f"unknown event {event!r}")
    return ops


def owner(op: Op) -> int | None:
    """The inode whose fsync makes ``op`` durable (``None`` for markers and fsyncs)."""
    kind = op[0]
    if kind in ("link", "rename", "unlink", "write", "trunc"):
        return int(op[1])
    return None


@dataclass(frozen=True)
class Tear:
    """How the first lost write of a file is torn: ``keep`` bytes of it survive;
    with ``sized`` the file also has the write's new size (zeros after ``keep``)."""

    keep: int
    sized: bool


@dataclass
class CrashState:
    """The ops[:point] prefix with ``dropped`` ops lost and ``torn`` ones partly kept."""

    point: int
    dropped: frozenset[int]
    torn: dict[int, Tear] = field(default_factory=dict)
    label: str = ""


@dataclass
class Node:
    is_dir: bool
    entries: dict[str, int] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)
    size: int = 0  # may exceed len(data): a zero tail, written as a sparse file


def replay(ops: list[Op], state: CrashState) -> dict[int, Node]:
    """The inodes a power loss leaves in ``state`` (unreachable ones included)."""
    nodes: dict[int, Node] = {ROOT: Node(True)}
    dropped, torn = state.dropped, state.torn
    for i in range(state.point):
        op = ops[i]
        kind = op[0]
        if kind in ("mark", "fsync"):
            continue
        tear = torn.get(i)
        if i in dropped and tear is None:
            continue
        if kind == "link":
            _, d, name, inode, is_dir = op
            nodes.setdefault(inode, Node(is_dir))
            if d in nodes:
                nodes[d].entries[name] = inode
        elif kind == "rename":
            _, d, src, dst = op
            if d in nodes and src in nodes[d].entries:
                nodes[d].entries[dst] = nodes[d].entries.pop(src)
        elif kind == "unlink":
            _, d, name = op
            if d in nodes:
                nodes[d].entries.pop(name, None)
        elif kind == "write":
            _, inode, position, data = op
            node = nodes.setdefault(inode, Node(False))
            end = position + len(data)
            if tear is not None:
                data = data[: tear.keep]
            _write(node, position, data)
            if tear is not None and tear.sized:
                node.size = max(node.size, end)
        elif kind == "trunc":
            _, inode, size = op
            node = nodes.setdefault(inode, Node(False))
            del node.data[size:]
            node.size = size
    return nodes


def _write(node: Node, position: int, data: bytes) -> None:
    if not data:
        return
    if len(node.data) < position:
        node.data.extend(bytes(position - len(node.data)))
    node.data[position : position + len(data)] = data
    node.size = max(node.size, position + len(data))


def tree(nodes: dict[int, Node]) -> dict[str, Node]:
    """Reachable nodes by path (``"."`` is the root)."""
    out: dict[str, Node] = {}
    stack = [(".", ROOT)]
    while stack:
        path, inode = stack.pop()
        node = nodes[inode]
        out[path] = node
        if node.is_dir:
            for name, child in node.entries.items():
                stack.append((name if path == "." else f"{path}/{name}", child))
    return out


def digest(paths: dict[str, Node]) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for path in sorted(paths):
        node = paths[path]
        h.update(path.encode() + b"\0")
        if node.is_dir:
            h.update(b"d")
        else:
            h.update(b"f%d:" % node.size + bytes(node.data[: node.size]))
    return h.digest()


def materialise(paths: dict[str, Node], target: str) -> None:
    """Write the tree to ``target`` (an empty directory); zero tails stay sparse."""
    for path in sorted(paths):  # parents sort before their children
        if path == ".":
            continue
        node = paths[path]
        full = os.path.join(target, path)
        if node.is_dir:
            os.mkdir(full)
            continue
        with open(full, "wb") as f:
            f.write(node.data[: node.size])
            if node.size > len(node.data):
                f.truncate(node.size)


def _tears(op: Op, current_size: int) -> list[Tear]:
    """Ways the write ``op`` can tear: a sector- or page-aligned prefix, with or without
    the write's new size reaching the disk (an append of zeros after the prefix)."""
    _, _, position, data = op
    end = position + len(data)
    out = []
    for unit in (SECTOR, PAGE):
        boundary = (position // unit + 1) * unit
        while boundary < end:
            keep = boundary - position
            out.append(Tear(keep, False))
            if end > current_size:
                out.append(Tear(keep, True))
            boundary += unit
            if unit == PAGE or len(out) > 8:
                break
    if end > current_size:
        out.append(Tear(0, True))  # only the size: all zeros
    return list(dict.fromkeys(out))


def crash_points(ops: list[Op]) -> list[int]:
    """Each point just before a file-system operation (after any markers before it),
    and the end: the strongest acknowledgement for each prefix of operations."""
    return sorted({*(i for i, op in enumerate(ops) if op[0] != "mark"), len(ops)})


def unsynced_at(ops: list[Op], point: int) -> frozenset[int]:
    """The operations before ``point`` that no fsync of their owner has covered."""
    pending: dict[int, list[int]] = {}
    for i in range(point):
        op = ops[i]
        if op[0] == "fsync":
            pending.pop(op[1], None)
        elif (o := owner(op)) is not None:
            pending.setdefault(o, []).append(i)
    return frozenset(i for idx in pending.values() for i in idx)


def crash_states(ops: list[Op], *, per_point: int, seed: int = 0) -> Iterator[CrashState]:
    """Up to ``per_point`` distinct crash states at every crash point."""
    rng = random.Random(seed)
    names = {ROOT: "."}
    for op in ops:
        if op[0] == "link":
            names.setdefault(op[3], op[2] if op[1] == ROOT else f"{names.get(op[1])}/{op[2]}")
    pending: dict[int, list[int]] = {}  # owner -> ops since its last fsync
    sizes: dict[int, int] = {}  # file sizes as the process saw them, before op i
    size_before: dict[int, int] = {}
    points = set(crash_points(ops))
    for i in range(len(ops) + 1):
        if i in points:
            yield from _states_at(ops, i, pending, size_before, per_point, rng, names)
        if i == len(ops):
            break
        op = ops[i]
        if op[0] == "fsync":
            pending.pop(op[1], None)
            continue
        o = owner(op)
        if o is None:
            continue
        pending.setdefault(o, []).append(i)
        if op[0] == "write":
            size_before[i] = sizes.get(o, 0)
            sizes[o] = max(sizes.get(o, 0), op[2] + len(op[3]))
        elif op[0] == "trunc":
            sizes[o] = op[2]


def _states_at(
    ops: list[Op],
    point: int,
    pending: dict[int, list[int]],
    size_before: dict[int, int],
    per_point: int,
    rng: random.Random,
    names: dict[int, str],
) -> list[CrashState]:
    dims = [(o, list(idx)) for o, idx in sorted(pending.items()) if idx]
    everything = frozenset(i for _, idx in dims for i in idx)
    states = [CrashState(point, frozenset(), label="all kept")]
    if not dims:
        return states
    states.append(CrashState(point, everything, label="nothing unsynced kept"))
    extra: list[CrashState] = []

    def lose_from(o: int, idx: list[int], j: int, tear: Tear | None = None) -> CrashState:
        torn = {idx[j]: tear} if tear is not None else {}
        return CrashState(
            point,
            frozenset(idx[j:]),
            torn,
            label=f"{names.get(o, o)} keeps {j} of {len(idx)} unsynced operations",
        )

    for o, idx in dims:
        extra.append(lose_from(o, idx, 0))
        for j in sorted(rng.sample(range(1, len(idx)), min(2, len(idx) - 1))):
            extra.append(lose_from(o, idx, j))
        for j in {0, len(idx) - 1}:
            op = ops[idx[j]]
            if op[0] == "write":
                for tear in _tears(op, size_before[idx[j]]):
                    extra.append(lose_from(o, idx, j, tear))
    for _ in range(max(4, per_point // 2)):  # random combinations: random prefixes each
        dropped: set[int] = set()
        torn: dict[int, Tear] = {}
        for _o, idx in dims:
            j = rng.randrange(len(idx) + 1)
            dropped.update(idx[j:])
            if j < len(idx) and ops[idx[j]][0] == "write" and rng.random() < 0.5:
                tears = _tears(ops[idx[j]], size_before[idx[j]])
                if tears:
                    torn[idx[j]] = rng.choice(tears)
        extra.append(CrashState(point, frozenset(dropped), torn, label="random"))
    if len(extra) > per_point - len(states):
        extra = rng.sample(extra, max(per_point - len(states), 0))
    return states + extra
