"""``reuse_freed_memory``: large buffers allocated again and again stop page-faulting.

Run in a child process (the setting is process-wide): a loop that reads
1 MiB and joins it into a new buffer, as a fetch does, faults in hundreds
of pages per round under glibc's defaults and none once the thresholds
are fixed.
"""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

CHILD = r"""
import os, resource, sys, tempfile
from logstore.server.memory import reuse_freed_memory
with tempfile.TemporaryFile() as f:
    for _ in range(64):  # no large block allocated before the measure: glibc's defaults as new
        f.write(os.urandom(64 << 10))
    f.flush()
    fd = f.fileno()
    def fetch(i):
        data = os.pread(fd, 1 << 20, (i % 4) << 20)
        return b"".join([memoryview(data)[: 1_000_000]])
    def faults():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for i in range(50):
            fetch(i)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    faults()
    default = faults()
    assert reuse_freed_memory() is True and reuse_freed_memory() is True
    faults()
    print(default, faults())
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="mallopt's thresholds are glibc's",
)
def test_fetch_sized_buffers_are_reused_without_page_faults() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    default, tuned = map(int, done.stdout.split())
    assert default > 50 * 100  # hundreds of 4 KiB pages per round: glibc's defaults
    assert tuned < 50  # a few in all: the freed blocks are reused


def test_an_embedded_server_leaves_the_process_malloc_alone_unless_asked(
    tmp_path, monkeypatch
) -> None:
    pytest.importorskip("kio")
    import logstore
    from logstore.server import app

    calls: list[int] = []
    monkeypatch.setattr(app, "reuse_freed_memory", lambda: calls.append(1) or True)
    with logstore.serve(tmp_path / "a", listen="127.0.0.1:0"):
        pass
    assert calls == []
    with logstore.serve(tmp_path / "b", listen="127.0.0.1:0", keep_freed_memory=True):
        pass
    assert calls == [1]


def test_the_serve_command_keeps_freed_memory_in_its_own_process(tmp_path, monkeypatch) -> None:
    pytest.importorskip("kio")
    import asyncio

    import logstore
    from logstore.cli import serve as serve_command

    asked: list[dict[str, object]] = []

    async def fake_serve_async(root: str, **options: object) -> None:
        asked.append(options)
        raise RuntimeError("stop here")

    monkeypatch.setattr(logstore, "serve_async", fake_serve_async)
    with pytest.raises(RuntimeError, match="stop here"):
        asyncio.run(serve_command._run(str(tmp_path), {"listen": "127.0.0.1:0"}))
    assert asked == [{"keep_freed_memory": True, "listen": "127.0.0.1:0"}]
