"""A real PostgreSQL server for the tests, started from the installed server binaries.

The server runs in a temporary folder and listens only on a unix socket in that folder (no
TCP port). Its binaries are Debian's (``apt-get install postgresql`` puts them in
``/usr/lib/postgresql/<version>/bin``), or the folder named by ``SEMWH_POSTGRES_BIN``, or
those on ``PATH``. ``initdb`` refuses to run as root, so when the tests run as root (as in
CI) the server runs as a dedicated unprivileged system user, created with ``useradd`` when
missing, that owns the folder.

Interface (kept stable; other test modules copy or import it):

- :func:`find_postgres_bin` -> the folder holding ``initdb``/``pg_ctl``/``postgres``, or None
- :func:`running_postgres_server` -> context manager yielding a :class:`PostgresServer`
- :meth:`PostgresServer.create_database` -> a fresh database (copied from ``template1``)
  and its SQLAlchemy URL ``postgresql+psycopg://semwh@/<name>?host=<socket folder>``
- :meth:`PostgresServer.drop_database`, :meth:`PostgresServer.url`
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

#: The database superuser every test connects as (trust authentication on the socket only).
SUPERUSER = "semwh"
#: The system user the server runs as when the tests run as root.
SYSTEM_USER = "semwh-postgres"
_SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")


def find_postgres_bin() -> Path | None:
    """The folder of the server binaries, newest Debian version first; None when absent."""
    candidates: list[Path] = []
    if os.environ.get("SEMWH_POSTGRES_BIN"):
        candidates.append(Path(os.environ["SEMWH_POSTGRES_BIN"]))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():

        def version(p: Path) -> tuple[int, ...]:
            return tuple(int(x) for x in p.name.split(".") if x.isdigit())

        versions = [p for p in debian.iterdir() if p.name.split(".")[0].isdigit()]
        candidates += [p / "bin" for p in sorted(versions, key=version, reverse=True)]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for folder in candidates:
        if all((folder / name).is_file() for name in _SERVER_BINARIES):
            return folder
    return None


def missing_reason() -> str | None:
    """Why no server can be started here (a skip reason), or None when one can."""
    if find_postgres_bin() is None:
        return (
            "PostgreSQL server binaries not found (apt-get install postgresql, "
            "or set SEMWH_POSTGRES_BIN to the folder holding initdb)"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'semwh[postgres]')"
    return None


def _system_user() -> pwd.struct_passwd:
    """The unprivileged user the server runs as under root, created when missing."""
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SYSTEM_USER)


@dataclass
class PostgresServer:
    """A running server: its socket folder, and databases made on it for tests."""

    bin_dir: Path
    folder: Path
    _names: Iterator[int] = field(default_factory=itertools.count)

    @property
    def socket_dir(self) -> Path:
        return self.folder / "socket"

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` on this server (over the unix socket)."""
        return f"postgresql+psycopg://{SUPERUSER}@/{database}?host={self.socket_dir}"

    def _admin(self):  # noqa: ANN202 - psycopg is imported lazily
        import psycopg

        return psycopg.connect(
            host=str(self.socket_dir), dbname="postgres", user=SUPERUSER, autocommit=True
        )

    def create_database(self, name: str | None = None) -> str:
        """A new empty database (a copy of ``template1``, a few tens of ms); its URL."""
        name = name or f"t{os.getpid()}_{next(self._names)}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, closing any connection still open to it."""
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run(cmd: list[str], user: pwd.struct_passwd | None, cwd: Path) -> None:
    extra = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
    proc = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}, **extra
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} failed ({proc.returncode}): {proc.stderr[-2000:]}")


@contextmanager
def running_postgres_server() -> Iterator[PostgresServer]:
    """Initialise and start a throwaway server; stop it and delete its folder on exit.

    Durability is off (``fsync``, ``synchronous_commit``, ``full_page_writes``): the data
    lives as long as the test session.
    """
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        raise RuntimeError(missing_reason())
    # A short path: a unix socket path must stay under 108 bytes.
    folder = Path(tempfile.mkdtemp(prefix="semwh-pg-", dir="/tmp"))
    user = _system_user() if os.geteuid() == 0 else None
    data, sockets, log = folder / "data", folder / "socket", folder / "server.log"
    sockets.mkdir()
    if user is not None:
        for path in (folder, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
    started = False
    try:
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",
            ],
            user,
            folder,
        )
        options = (
            f"-k {sockets} -c listen_addresses='' -c fsync=off -c synchronous_commit=off"
            " -c full_page_writes=off -c max_connections=100"
        )
        try:
            _run(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w"]
                + ["-t", "60", "start"],
                user,
                folder,
            )
        except RuntimeError as exc:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{exc}\nserver log:\n{tail}") from None
        started = True
        yield PostgresServer(bin_dir, folder)
    finally:
        if started:
            _run(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], user, folder
            )
        shutil.rmtree(folder, ignore_errors=True)
