"""A real Apache Kafka for the tests: its jars, its tools, one KRaft broker.

Owns fetching Kafka's jars once into a cache outside the repository (Maven,
from ``pom.xml`` beside this file), running a Kafka main class as a tool, and
a single-node combined broker+controller on free loopback ports that can be
stopped and started again over the same log directory (so a test can replace
a partition's segment files while it is down). Knows nothing of logstore.

Environment:

- ``LOGSTORE_KAFKA=required``: a missing ``java`` or ``mvn``, or a failed
  fetch, fails the tests instead of skipping them (CI sets it).
- ``LOGSTORE_KAFKA_CACHE``: the jar cache, ``~/.cache/logstore-kafka`` by default.
- ``LOGSTORE_KAFKA_VERSION``: the Kafka release, ``4.4.0`` by default.
- ``JAVA_HOME``: the JDK to run; else ``java`` on ``PATH``.
"""

from __future__ import annotations

import base64
import ctypes
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
DEFAULT_VERSION = "4.4.0"
BROKER_MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
#: Kafka 4.x's class; the Scala ``kafka.tools.DumpLogSegments`` before it.
DUMP_LOG_SEGMENTS = "org.apache.kafka.tools.DumpLogSegments"
#: What KafkaRaftServer logs (at INFO) once the broker serves requests.
STARTED_MESSAGE = "Kafka Server started"

# Tools start often and briefly: a client VM's tiers and the serial collector
# start a JVM about a third faster than the defaults and need less memory.
TOOL_JVM = ("-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto")
BROKER_JVM = ("-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-Xshare:auto")
# Keys and values are printed as text: say which encoding, whatever the locale.
ENCODING_JVM = (
    "-Dfile.encoding=UTF-8",
    "-Dsun.stdout.encoding=UTF-8",
    "-Dsun.stderr.encoding=UTF-8",
)


class KafkaUnavailable(Exception):
    """Kafka cannot run here (no java, no mvn, no jars); the message says why."""


def required() -> bool:
    """Whether Kafka must be there (``LOGSTORE_KAFKA=required``): fail, never skip."""
    return os.environ.get("LOGSTORE_KAFKA", "") == "required"


def kafka_version() -> str:
    return os.environ.get("LOGSTORE_KAFKA_VERSION", DEFAULT_VERSION)


def cache_root() -> Path:
    given = os.environ.get("LOGSTORE_KAFKA_CACHE")
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "logstore-kafka"


def find_java() -> str:
    """The ``java`` to run: ``$JAVA_HOME/bin/java``, else the one on ``PATH``."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return os.path.join(home, "bin", "java")
    found = shutil.which("java")
    if found is None:
        raise KafkaUnavailable("no java on PATH (and no JAVA_HOME): install a JDK 17 or newer")
    return found


def _stamp_text(version: str) -> str:
    """What the stamp holds: a change to the pom or the version fetches again."""
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    return f"kafka {version}\npom {digest}\n"


def ensure_jars(
    *, root: Path | None = None, version: str | None = None, mvn: str | None = None
) -> Path:
    """The directory of Kafka's jars, fetched with Maven only if the cache lacks them.

    A stamp written after a complete fetch marks the cache good, so a later
    run (offline too) never calls Maven; a lock file keeps two test processes
    from fetching into one directory at once.

    Raises:
        KafkaUnavailable: no cache and no ``mvn``, or Maven failed (its output quoted).
    """
    root = cache_root() if root is None else root
    version = kafka_version() if version is None else version
    home = root / version
    lib, stamp = home / "lib", home / "stamp"
    expected = _stamp_text(version)
    if stamp.is_file() and stamp.read_text() == expected:
        return lib
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if stamp.is_file() and stamp.read_text() == expected:
            return lib  # another process fetched while this one waited
        mvn = mvn or shutil.which("mvn")
        if mvn is None:
            raise KafkaUnavailable(
                f"no mvn on PATH to fetch Kafka {version}'s jars into {home} "
                "(install Maven, or fill the cache: see CONTRIBUTING.md)"
            )
        stamp.unlink(missing_ok=True)
        shutil.rmtree(lib, ignore_errors=True)
        argv = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-Dkafka.version={version}",
            f"-DoutputDirectory={lib}",
        ]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise KafkaUnavailable(f"fetching Kafka {version}'s jars failed: {exc}") from exc
        if done.returncode != 0 or not any(lib.glob("kafka_2.13-*.jar")):
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise KafkaUnavailable(
                f"fetching Kafka {version}'s jars failed (mvn exit {done.returncode}):\n{tail}"
            )
        stamp.write_text(expected)
    return lib


def write_log4j2(path: Path, log_file: Path, *, info_loggers: Sequence[str] = ()) -> Path:
    """A log4j2 configuration: WARN and above into ``log_file``, nothing on the console.

    ``info_loggers`` are raised to INFO (the broker's start message is one).
    """
    lines = [
        "status = warn",
        "appender.file.type = File",
        "appender.file.name = FILE",
        f"appender.file.fileName = {log_file}",
        "appender.file.layout.type = PatternLayout",
        "appender.file.layout.pattern = [%d] %p %m (%c)%n",
        "rootLogger.level = warn",
        "rootLogger.appenderRef.file.ref = FILE",
    ]
    for i, name in enumerate(info_loggers):
        lines += [f"logger.l{i}.name = {name}", f"logger.l{i}.level = info"]
    path.write_text("\n".join(lines) + "\n")
    return path


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the JVM gets SIGKILL if the test process dies without stopping it."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class KafkaTools:
    """Runs Kafka main classes from the jars: ``tools(main_class, *args) -> (rc, out, err)``."""

    def __init__(self, lib: Path, work: Path, *, java: str | None = None) -> None:
        self.java = java or find_java()
        self.classpath = f"{lib}/*"
        self.work = work
        self.log_file = work / "tools.log"
        self.log4j = write_log4j2(work / "tools-log4j2.properties", self.log_file)

    def argv(
        self,
        main_class: str,
        *args: str,
        jvm: Sequence[str] = TOOL_JVM,
        log4j: Path | None = None,
    ) -> list[str]:
        """The command line of ``main_class``: the JVM's flags, the jars, then ``args``."""
        return [
            self.java,
            *jvm,
            *ENCODING_JVM,
            f"-Dlog4j2.configurationFile={log4j or self.log4j}",
            "-cp",
            self.classpath,
            main_class,
            *args,
        ]

    def __call__(self, main_class: str, *args: str, timeout: float = 300) -> tuple[int, str, str]:
        done = subprocess.run(
            self.argv(main_class, *args),
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            check=False,
            cwd=self.work,
            preexec_fn=_die_with_parent,
        )
        return done.returncode, done.stdout, done.stderr


def free_port() -> int:
    """A loopback port nobody listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def random_cluster_id() -> str:
    """What ``StorageTool random-uuid`` prints: 16 random bytes, URL-safe base64, no padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


class KafkaBroker:
    """One KRaft node (broker and controller) over ``home``; ``start()`` formats it once.

    ``log_dir`` holds only topic partitions (the metadata log is elsewhere), so
    a test may replace a partition's files between ``stop()`` and ``start()``.
    The ports stay the same across restarts, so ``bootstrap`` does too.
    """

    def __init__(self, tools: KafkaTools, home: Path) -> None:
        self.tools = tools
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.log_dir = home / "data"
        self.metadata_dir = home / "metadata"
        self.port, self.controller_port = free_port(), free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.config = home / "server.properties"
        self.log_file = home / "broker.log"
        self.stderr_file = home / "broker.stderr"
        self.log4j = write_log4j2(
            home / "broker-log4j2.properties",
            self.log_file,
            info_loggers=("kafka.server.KafkaRaftServer",),
        )
        self.process: subprocess.Popen[bytes] | None = None
        self._formatted = False

    def properties(self) -> dict[str, str]:
        """The broker's settings: a one-node cluster, internal topics with one replica."""
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.log_dir),
            "metadata.log.dir": str(self.metadata_dir),
            "num.partitions": "1",
            # The tests write records stamped in 2023: Kafka's default retention (7 days by
            # timestamp, checked 30 s after a start and every 5 min) would delete whole
            # segments under a test that reads them back, depending on when the check fell.
            "log.retention.ms": "-1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(8 << 20),
        }

    def _format(self) -> None:
        text = "".join(f"{k}={v}\n" for k, v in self.properties().items())
        self.config.write_text(text)
        code, out, err = self.tools(
            STORAGE_TOOL,
            "format",
            "--standalone",
            "-t",
            random_cluster_id(),
            "-c",
            str(self.config),
        )
        if code != 0:
            raise RuntimeError(f"StorageTool format failed (exit {code}):\n{out}\n{err}")
        self._formatted = True

    def start(self, *, timeout: float = 120) -> None:
        """Start the broker and wait until it serves requests (its start message).

        Raises:
            RuntimeError: it exited or did not start in ``timeout`` seconds; its log quoted.
        """
        if self.process is not None:
            raise RuntimeError("the broker is running already")
        if not self._formatted:
            self._format()
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        env = dict(os.environ, LOG_DIR=str(self.home))
        with open(self.stderr_file, "ab") as stderr:
            argv = self.tools.argv(BROKER_MAIN, str(self.config), jvm=BROKER_JVM, log4j=self.log4j)
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                cwd=self.home,
                env=env,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._log_since(offset).find(STARTED_MESSAGE) >= 0:
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.1)  # polling a child's log file: there is no pipe to wait on
        code = self.process.poll()
        self.kill()
        raise RuntimeError(
            f"the Kafka broker did not start (exit {code}); log:\n{self._log_since(offset)[-4000:]}"
            f"\nstderr:\n{self.stderr()[-4000:]}"
        )

    def _log_since(self, offset: int) -> str:
        if not self.log_file.exists():
            return ""
        with open(self.log_file, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def log(self) -> str:
        """Everything the broker logged (WARN and up, and its start messages)."""
        return self._log_since(0)

    def stderr(self) -> str:
        return self.stderr_file.read_text("utf-8", "replace") if self.stderr_file.exists() else ""

    def stop(self, *, timeout: float = 60) -> int | None:
        """SIGTERM and wait (a clean shutdown, Kafka writes its markers); SIGKILL after ``timeout``."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, no clean-shutdown markers."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
