"""The embedded default broker: one Apache Kafka node in KRaft mode on 127.0.0.1.

``canarystream kafka up`` resolves the broker's jars from Maven Central once (``pom.xml``,
shipped in this package with ``log4j.properties``, so an installed wheel needs no checkout),
formats a storage directory, starts ``kafka.Kafka`` with Java 17 in its own process group, and
waits until it answers metadata requests. ``down`` stops it with SIGTERM (SIGKILL after a grace
period). Everything lives under one home directory.

A secure broker (``kafka up --secure``, :mod:`canarystream.kafka.secure`) has its own storage
and serves clients over SASL_SSL only, with SCRAM-SHA-512 users formatted into that storage.

The pinned version is :data:`KAFKA_VERSION`; ``CANARYSTREAM_KAFKA_VERSION`` picks another
one, with its own jars and storage. ``make test`` runs the worker's broker tests on 4.4.0 as
well. Kafka 4 logs through log4j 2, which finds no configuration of its own and says so once
in ``stdout.log``; the broker's log still reaches ``server.log`` through the SLF4J binding of
the pom. The two-worker scale-out test that once failed on 4.0.2 met a Faust race that does
not depend on the broker's version (see the README).
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from canarystream.errors import BrokerError
from canarystream.kafka.secure import ADMIN, MECHANISM, SecureSetup, prepare

__all__ = [
    "KAFKA_VERSION",
    "LocalKafka",
    "broker_resource",
    "default_home",
    "default_version",
    "new_cluster_id",
]

KAFKA_VERSION = "3.9.1"  # must match the packaged pom.xml
_MIN_JAVA = 17
_SCRAM_LOGIN_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


def broker_resource(name: str) -> Path:
    """A file shipped with this package for the broker (``pom.xml``, ``log4j.properties``).

    Maven and the JVM need a path: a package installed as files (a wheel, an editable
    checkout) has one. From a zip import the file is copied under the user's cache once.
    """
    packaged = resources.files(__package__ or "canarystream.kafka") / name
    if not packaged.is_file():
        raise FileNotFoundError(f"no broker resource {name!r} in canarystream.kafka")
    if isinstance(packaged, Path):
        return packaged
    copy = default_home() / "resources" / name
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_bytes(packaged.read_bytes())
    return copy


def default_version() -> str:
    """``CANARYSTREAM_KAFKA_VERSION``, else the pinned :data:`KAFKA_VERSION`."""
    return os.environ.get("CANARYSTREAM_KAFKA_VERSION") or KAFKA_VERSION


def default_home() -> Path:
    """``CANARYSTREAM_KAFKA_HOME``, else ``~/.cache/canarystream/kafka``."""
    env = os.environ.get("CANARYSTREAM_KAFKA_HOME")
    return Path(env) if env else Path.home() / ".cache" / "canarystream" / "kafka"


_RESERVED_IDS = (bytes(16), bytes(15) + b"\x01")  # Kafka's zero and metadata-topic ids


def new_cluster_id(draw: Callable[[], bytes] = lambda: uuid.uuid4().bytes) -> str:
    """A new KRaft cluster id: a random 16-byte id in URL-safe base64, 22 characters.

    Drawn again, as Kafka's own ``Uuid.randomUuid`` does, while it begins with ``-`` (about
    one draw in 64) or is an id Kafka reserves: command-line tools read a leading ``-`` as an
    option (``argument --cluster-id/-t: expected one argument``).

    >>> cluster_id = new_cluster_id()
    >>> len(cluster_id), cluster_id[0] != "-"
    (22, True)
    """
    for _ in range(1000):
        raw = draw()
        cluster_id = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        if len(raw) == 16 and raw not in _RESERVED_IDS and not cluster_id.startswith("-"):
            return cluster_id
    raise BrokerError("could not draw a usable cluster id")


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); its /proc state says it is gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    try:
        version = out.split('"')[1]
    except IndexError as exc:
        raise BrokerError(f"cannot read the Java version from {java!r}: {out!r}") from exc
    head = version.split(".")[0]
    return int(version.split(".")[1]) if head == "1" else int(head)


@dataclass
class LocalKafka:
    """One local KRaft broker: its jars, storage, ports and process.

    ``home`` holds ``kafka-<version>/libs`` (shared by every data directory) and, by default,
    the data directory ``data/`` with the pid file, the generated ``server.properties`` and the
    broker's log.
    """

    home: Path
    port: int = 19092
    controller_port: int = 19093
    data_dir: Path | None = None
    heap: str = "1g"
    version: str = field(default_factory=default_version)
    secure: bool = False

    @property
    def bootstrap(self) -> str:
        """The bootstrap address clients use."""
        return f"127.0.0.1:{self.port}"

    @property
    def libs(self) -> Path:
        return self.home / f"kafka-{self.version}" / "libs"

    @property
    def data(self) -> Path:
        if self.data_dir is not None:
            return self.data_dir
        # Storage formatted by one version (or with security) is not handed to another.
        name = "data-secure" if self.secure else "data"
        return self.home / (name if self.version == KAFKA_VERSION else f"{name}-{self.version}")

    @property
    def security(self) -> SecureSetup:
        """The CA, keystore and SCRAM users of a secure broker (created on first use)."""
        if not self.secure:
            raise BrokerError("this broker is not secured (start it with secure=True)")
        return prepare(self.data / "security")

    def client_settings(self, user: str = ADMIN) -> dict[str, str]:
        """The settings with which ``user``'s clients reach this broker (a plain broker: only
        its address); :meth:`SecureSetup.client_env` gives them as environment variables."""
        if not self.secure:
            return {"kafka_bootstrap": self.bootstrap}
        return self.security.client_settings(user, self.bootstrap)

    @property
    def pid_file(self) -> Path:
        return self.data / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.data / "logs" / "server.log"

    # ---------------------------------------------------------------- install
    def install(self) -> Path:
        """Resolve the broker's jars with Maven once; return the libs directory."""
        marker = self.libs / ".complete"
        if marker.exists():
            return self.libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError("Maven (mvn) is not on PATH: it fetches the broker's jars")
        staging = self.libs.with_name("libs.partial")
        shutil.rmtree(staging, ignore_errors=True)
        command = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(broker_resource("pom.xml")),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
            f"-Dkafka.version={self.version}",
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BrokerError(
                f"Maven could not resolve Kafka {self.version}:\n{done.stdout}{done.stderr}"
            )
        shutil.rmtree(self.libs, ignore_errors=True)
        staging.rename(self.libs)
        marker.touch()
        return self.libs

    # ---------------------------------------------------------------- lifecycle
    def pid(self) -> int | None:
        """The broker's pid if it is running."""
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def is_up(self) -> bool:
        """Whether the broker process runs and its port accepts connections."""
        return self.pid() is not None and _port_open("127.0.0.1", self.port)

    def _listener_properties(self) -> list[str]:
        """Listeners: clients on PLAINTEXT, or on SASL_SSL with SCRAM when secure; the
        controller's listener plain, on the loopback interface only."""
        client = "SASL_SSL" if self.secure else "PLAINTEXT"
        lines = [
            f"listeners={client}://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners={client}://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            f"listener.security.protocol.map={client}:{client},CONTROLLER:PLAINTEXT",
            f"inter.broker.listener.name={client}",
        ]
        if not self.secure:
            return lines
        security = self.security
        admin = security.passwords[ADMIN]
        jaas = f'{_SCRAM_LOGIN_MODULE} required username="{ADMIN}" password="{admin}";'
        return [
            *lines,
            f"sasl.enabled.mechanisms={MECHANISM}",
            f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config={jaas}",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={security.keystore}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={security.ca_file}",
            "ssl.client.auth=none",
            "ssl.enabled.protocols=TLSv1.3,TLSv1.2",
        ]

    def _properties(self) -> str:
        data = self.data
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                *self._listener_properties(),
                f"log.dirs={data / 'kraft'}",
                "num.partitions=1",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=12",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "transaction.state.log.num.partitions=12",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=true",
                "log.retention.check.interval.ms=60000",
                "",
            ]
        )

    def format_storage(self, java: str, classpath: str, properties: Path) -> None:
        """Format the storage directory once, under a new cluster id."""
        tool = [java, "-cp", classpath, "kafka.tools.StorageTool"]
        # The id attached to its option: the tool could never read it as an option itself.
        # A secure broker's SCRAM users exist from the start: they live in the metadata log.
        users = self.security.scram_arguments() if self.secure else []
        formatted = subprocess.run(
            [*tool, "format", f"--cluster-id={new_cluster_id()}", "-c", str(properties), *users],
            capture_output=True,
            text=True,
            check=False,
        )
        if formatted.returncode != 0:
            raise BrokerError(f"formatting storage failed:\n{formatted.stderr}")

    def _preflight(self) -> str:
        """The path of a recent enough Java, once the broker's ports are known to be free."""
        java = shutil.which("java")
        if java is None:
            raise BrokerError("Java is not on PATH: the broker needs Java 17 or newer")
        if (major := _java_major(java)) < _MIN_JAVA:
            raise BrokerError(f"Java {major} found; the broker needs {_MIN_JAVA} or newer")
        for port in (self.port, self.controller_port):
            if _port_open("127.0.0.1", port):
                raise BrokerError(
                    f"port {port} on 127.0.0.1 is taken by another process; stop it or pick "
                    "other ports (--port)"
                )
        return java

    def start(self, *, timeout: float = 60.0) -> None:
        """Install if needed, format storage on first use, start, and wait until it answers."""
        if self.is_up():
            return
        java = self._preflight()
        libs = self.install()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        if self.secure:  # its storage holds the users' SCRAM credentials
            self.data.chmod(0o700)
        properties = self.data / "server.properties"
        # 0600: a secure broker's file holds the password it authenticates to itself with.
        properties.unlink(missing_ok=True)
        properties.touch(mode=0o600)
        properties.write_text(self._properties())
        if self.secure:
            self.security.write_env_files(self.bootstrap)
        classpath = f"{libs}/*"
        if not (self.data / "kraft" / "meta.properties").exists():
            self.format_storage(java, classpath, properties)
        command = [
            java,
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{broker_resource('log4j.properties')}",
            f"-Dkafka.logs.dir={self.log_file.parent}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(properties),
        ]
        with open(self.log_file.parent / "stdout.log", "ab") as out:
            process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BrokerError(
                    f"the broker exited with {process.returncode}; see {self.log_file}"
                )
            if _port_open("127.0.0.1", self.port) and self._answers():
                return
            time.sleep(0.25)
        self.stop()
        raise BrokerError(f"the broker did not answer within {timeout:.0f} s")

    def _answers(self) -> bool:
        """Whether the broker serves metadata (the port opens before the broker is ready)."""
        from canarystream.kafka.admin import broker_ready  # noqa: PLC0415  (asyncio-heavy)
        from canarystream.kafka.connection import Connection  # noqa: PLC0415
        from canarystream.settings import load_settings  # noqa: PLC0415

        return broker_ready(Connection(load_settings(**self.client_settings(ADMIN))))

    def stop(self, *, grace: float = 30.0) -> bool:
        """Stop the broker; True if one was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.2)
        if _pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
        # Reap it when it is our child (tests start and stop it in-process).
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        self.pid_file.unlink(missing_ok=True)
        return True

    def wipe(self) -> None:
        """Stop the broker and delete its data directory (the jars stay)."""
        self.stop()
        shutil.rmtree(self.data, ignore_errors=True)
