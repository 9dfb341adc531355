"""A private stack on loopback for one fault-suite invocation: PostgreSQL+PostGIS, Redis (one
node or a 3-node Redis Cluster), the Stripe-compatible server behind the fault proxy, two API
processes and N workers. Every process is a child of the harness, killed by its own pid."""

import contextlib
import hashlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
SEED_CACHE = Path("/var/tmp/gd-faults-cache")
# Besides the schema, the seeded database depends on these.
SEED_INPUTS = ("dispatch/seed.py", "dispatch/accounts.py", "dispatch/security.py")
JWT_SECRET = "faults-suite-jwt-secret-0123456789abcdef"
WEBHOOK_SECRET = "whsec_faults_suite_0123456789abcdef0123"
METERS_SECRET = "ctwing-faults-suite-secret-0123456789abcdef"
STRIPE_KEY = "sk_test_localstripe"


class StackError(RuntimeError):
    """A service of the private stack did not come up."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_port() -> int:
    """A free port for a cluster node whose bus port (+10,000) is free too: the kernel's free
    ports sit high enough that the bus port would pass 65,535, which Redis refuses."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(20_000, 28_000)
        try:
            for candidate in (port, port + 10_000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise StackError("no free port pair for a Redis Cluster node")


def wait_port(port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        time.sleep(0.1)
    return False


def as_postgres(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True,
                          check=check, timeout=timeout)


@dataclass
class Proc:
    """A restartable child: same command, port and environment after a kill."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    port: int | None = None
    popen: subprocess.Popen | None = None
    skewed_s: int = 0

    def start(self, skew_s: int = 0) -> None:
        env = dict(self.env)
        self.skewed_s = skew_s
        if skew_s:
            # libfaketime (Debian package faketime): wall clock shifted, monotonic clock left alone.
            env.update(LD_PRELOAD=str(FAKETIME_LIB), FAKETIME=f"{skew_s:+d}s", FAKETIME_DONT_FAKE_MONOTONIC="1",
                       FAKETIME_NO_CACHE="1")
        with open(self.log, "a") as out:
            out.write(f"\n--- start {time.strftime('%H:%M:%S')} skew={skew_s}\n")
            out.flush()
            self.popen = subprocess.Popen(self.argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            assert self.popen is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=15)
            if self.alive():
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)

    def restart(self, skew_s: int = 0, sig: int = signal.SIGKILL) -> None:
        self.kill(sig)
        self.start(skew_s)


@dataclass
class Stack:
    redis_mode: str = "single"
    workers: int = 2
    keep: bool = False
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="gd-faults-", dir="/var/tmp")))
    pg_port: int = field(default_factory=free_port)
    redis_ports: list[int] = field(default_factory=list)
    stripe_port: int = field(default_factory=free_port)
    proxy_port: int = field(default_factory=free_port)
    api: list[Proc] = field(default_factory=list)
    worker_procs: list[Proc] = field(default_factory=list)
    redis_procs: list[Proc] = field(default_factory=list)
    stripe: Proc | None = None

    def __post_init__(self) -> None:
        os.chmod(self.base, 0o755)  # the postgres user must enter it
        (self.base / "logs").mkdir()
        self.redis_ports = [cluster_port() for _ in range(3)] if self.redis_mode == "cluster" else [free_port()]

    # -- environment -----------------------------------------------------------------------

    @property
    def database_url(self) -> str:
        return f"postgresql+asyncpg://postgres:faults@127.0.0.1:{self.pg_port}/gasdispatch"

    @property
    def stripe_base(self) -> str:
        return f"http://127.0.0.1:{self.stripe_port}"

    def env(self, quick: bool) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GASDISPATCH_")}
        env.update({
            "PATH": f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            "GASDISPATCH_ENVIRONMENT": "test",
            "GASDISPATCH_DATABASE_URL": self.database_url,
            "GASDISPATCH_REDIS_URL": f"redis://127.0.0.1:{self.redis_ports[0]}/0",
            "GASDISPATCH_DB_POOL_SIZE": "5",
            "GASDISPATCH_JWT_SECRET": JWT_SECRET,
            "GASDISPATCH_EMBEDDED_WORKER": "false",
            "GASDISPATCH_PAYMENT_GATEWAY": "stripe",
            "GASDISPATCH_STRIPE_API_BASE": f"http://127.0.0.1:{self.proxy_port}",
            "GASDISPATCH_STRIPE_API_KEY": STRIPE_KEY,
            "GASDISPATCH_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "GASDISPATCH_METERS_WEBHOOK_SECRETS": f'{{"ctwing": "{METERS_SECRET}"}}',
            # The simulated day is compressed: technicians drive fast, reviews freeze within
            # seconds, customers may order often.
            "GASDISPATCH_MAX_SPEED_KMH": "2000",
            "GASDISPATCH_CUSTOMER_ORDER_RATE": "1000/minute",
            "GASDISPATCH_CUSTOMER_MAX_OPEN_ORDERS": "5",
            "GASDISPATCH_REVIEW_EDIT_WINDOW_H": "0.004" if quick else "0.01",
            "GASDISPATCH_REVIEW_WINDOW_H": "0.02" if quick else "0.04",
            "GASDISPATCH_FIELD_ARRIVAL_RADIUS_M": "300",
        })
        if self.redis_mode == "cluster":
            nodes = ",".join(f"127.0.0.1:{p}" for p in self.redis_ports)
            env["GASDISPATCH_REDIS_CLUSTER_NODES"] = nodes
            env["GASDISPATCH_TEST_REDIS_CLUSTER_PORTS"] = ",".join(map(str, self.redis_ports))
        return env

    # -- PostgreSQL ------------------------------------------------------------------------

    @property
    def pg_data(self) -> Path:
        return self.base / "pg"

    def start_postgres_fresh(self) -> None:
        self.pg_data.mkdir(mode=0o700)
        shutil.chown(self.pg_data, "postgres", "postgres")
        as_postgres(str(PG_BIN / "initdb"), "-D", str(self.pg_data), "-U", "postgres", "--auth-local=trust",
                    "--auth-host=trust", "-E", "UTF8", "--locale=C.UTF-8")
        self.start_postgres()
        as_postgres(str(PG_BIN / "createdb"), "-h", str(self.pg_data), "-p", str(self.pg_port), "-U", "postgres",
                    "gasdispatch")

    def start_postgres(self) -> None:
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.pg_data), "-l", str(self.pg_data / "server.log"), "-w",
                    "-t", "60", "-o", f"-c listen_addresses=127.0.0.1 -p {self.pg_port} -c unix_socket_directories="
                    f"{self.pg_data} -c fsync=off -c max_connections=300", "start")

    def stop_postgres(self, mode: str = "immediate") -> None:
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.pg_data), "-m", mode, "-w", "stop", check=False)

    def _pg(self, tool: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / tool), "-h", str(self.pg_data), "-p",
                               str(self.pg_port), "-U", "postgres", *args], check=True, timeout=300, **kwargs)

    def _schema_fingerprint(self) -> str:
        """What the seeded copy depends on: the migrated schema (tables, columns, constraints,
        Alembic heads), whatever edits produced it."""
        return self._pg("psql", "-d", "gasdispatch", "-tAc", """
            SELECT string_agg(line, E'\\n' ORDER BY line) FROM (
              SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' '
                     || coalesce(column_default, '') AS line
              FROM information_schema.columns WHERE table_schema = 'public'
              UNION ALL SELECT conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
              FROM pg_constraint WHERE connamespace = 'public'::regnamespace
              UNION ALL SELECT 'alembic ' || version_num FROM alembic_version) lines""",
                        capture_output=True, text=True).stdout

    def migrate_and_seed(self, env: dict[str, str], use_cache: bool) -> str:
        """Migrate, then every demo city, restored from a cached copy when the schema and the seed
        code are unchanged (password hashing makes seeding slow); says which."""
        done = self.run_app(env, "migrate")
        if done.returncode != 0:
            raise StackError(f"migrate failed: {done.stderr[-2000:]}")
        digest = hashlib.sha1(self._schema_fingerprint().encode())
        for path in SEED_INPUTS:
            digest.update((ROOT / path).read_bytes())
        cached = SEED_CACHE / f"seeded-{digest.hexdigest()[:16]}.dump"
        if use_cache and cached.is_file():
            self._pg("dropdb", "gasdispatch")
            self._pg("createdb", "gasdispatch")
            with open(cached, "rb") as dump:
                self._pg("pg_restore", "-d", "gasdispatch", "--no-owner", stdin=dump, capture_output=True)
            return "migrated; seeded cities restored from the cache"
        from dispatch.seed import CITIES

        seeding = [subprocess.Popen([sys.executable, "-m", "app", "seed", "--city", city], cwd=ROOT, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for city in CITIES]
        for city, process in zip(CITIES, seeding):
            output, _ = process.communicate(timeout=600)
            if process.returncode != 0:
                raise StackError(f"seeding {city} failed: {output[-2000:]}")
        SEED_CACHE.mkdir(exist_ok=True)
        partial = cached.with_suffix(".part")
        with open(partial, "wb") as dump:
            self._pg("pg_dump", "-Fc", "gasdispatch", stdout=dump)
        partial.rename(cached)
        for stale in SEED_CACHE.glob("seeded-*.dump"):
            if stale != cached:
                stale.unlink()
        return f"migrated and seeded {', '.join(CITIES)} (now cached)"

    # -- Redis -----------------------------------------------------------------------------

    def _redis_proc(self, port: int) -> Proc:
        directory = self.base / f"redis-{port}"
        directory.mkdir(exist_ok=True)
        argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(directory),
                "--save", "", "--appendonly", "no", "--protected-mode", "no"]
        if self.redis_mode == "cluster":
            argv += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                     "--cluster-node-timeout", "2000"]
        return Proc(f"redis-{port}", argv, dict(os.environ), self.base / "logs" / f"redis-{port}.log", port)

    def start_redis(self) -> None:
        """Fresh and empty: a cluster is created anew (its nodes forget everything)."""
        self.redis_procs = [self._redis_proc(p) for p in self.redis_ports]
        for proc in self.redis_procs:
            for stale in (self.base / f"redis-{proc.port}").glob("nodes-*.conf"):
                stale.unlink()
            proc.start()
        for port in self.redis_ports:
            if not wait_port(port, 10):
                raise StackError(f"redis on {port} did not start")
        if self.redis_mode == "cluster":
            subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.redis_ports],
                            "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True, timeout=60)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                info = subprocess.run(["redis-cli", "-p", str(self.redis_ports[0]), "cluster", "info"], check=False,
                                      capture_output=True, text=True).stdout
                if "cluster_state:ok" in info:
                    return
                time.sleep(0.2)
            raise StackError("redis cluster did not reach cluster_state:ok")

    def stop_redis(self) -> None:
        for proc in self.redis_procs:
            proc.kill()

    # -- the provider ----------------------------------------------------------------------

    def start_stripe(self) -> None:
        self.stripe = Proc("stripe", [sys.executable, "tests/support/stripe_server.py", "--host", "127.0.0.1",
                                      "--port", str(self.stripe_port)], dict(os.environ),
                           self.base / "logs" / "stripe.log", self.stripe_port)
        self.stripe.start()
        if not wait_port(self.stripe_port, 30):
            raise StackError(f"stripe server did not start; see {self.stripe.log}")

    # -- the application -------------------------------------------------------------------

    def run_app(self, env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "app", *args], check=False, cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=timeout)

    def start_app(self, env: dict[str, str]) -> None:
        for i in range(2):
            port = free_port()
            self.api.append(Proc(f"api-{i}", [sys.executable, "-m", "uvicorn", "app.asgi:create_app", "--factory",
                                              "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                                              "--ws-max-size", "65536", "--ws-per-message-deflate", "false"],
                                 env, self.base / "logs" / f"api-{i}.log", port))
        for i in range(self.workers):
            self.worker_procs.append(Proc(f"worker-{i}", [sys.executable, "-m", "app", "worker"], env,
                                          self.base / "logs" / f"worker-{i}.log"))
        for proc in [*self.api, *self.worker_procs]:
            proc.start()
        for proc in self.api:
            self.wait_api(proc, 60)

    def wait_api(self, proc: Proc, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not proc.alive():
                return False
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{proc.port}/v1/health/live", timeout=1).status_code == 200:
                    return True
            time.sleep(0.2)
        return False

    def api_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p.port}" for p in self.api]

    def stop(self) -> None:
        for proc in [*self.api, *self.worker_procs]:
            proc.kill(signal.SIGTERM)
        if self.stripe is not None:
            self.stripe.kill(signal.SIGTERM)
        self.stop_redis()
        if self.pg_data.exists():
            self.stop_postgres("fast")
        if not self.keep:
            shutil.rmtree(self.base, ignore_errors=True)
