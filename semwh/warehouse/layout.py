"""The warehouse folder's layout on disk (registry file, ``vectors/``, temporary files), its
registry URL, engine and sessions.

"Layout" here is where a warehouse keeps its files. The layout of a tensor's axes (channels
first or last, tokens; the ``layers.layout`` column) is another thing:
:mod:`semwh.extract.layouts`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    NoSuchModuleError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from semwh.config import (
    ENV_DB,
    REGISTRY_FILENAME,
    TMP_DIRNAME,
    VECTORS_DIRNAME,
    Settings,
)
from semwh.errors import (
    ConfigError,
    DuplicateError,
    MissingDependencyError,
    WarehouseBusyError,
    WarehouseError,
)
from semwh.warehouse.storage import VectorsRoot

# The warehouse_settings key that records where the warehouse keeps its vectors.
VECTORS_SETTING = "vectors_location"

_LOCK_PATTERNS = ("could not set lock", "conflicting lock", "database is locked")


def is_busy_error(exc: BaseException) -> bool:
    """Whether ``exc`` says another process holds the database."""
    text = str(exc).lower()
    return any(pattern in text for pattern in _LOCK_PATTERNS)


def busy_message(path: object, exc: BaseException) -> str:
    """The "warehouse busy" line: which file, and which process holds it when DuckDB says."""
    pid = re.search(r"\(PID (\d+)\)", str(exc))
    holder = f"another process (PID {pid.group(1)})" if pid else "another process"
    return (
        f"warehouse busy: {holder} has {path} open; wait for it to finish "
        "(or close it) and run the command again"
    )


def describe_integrity_error(exc: IntegrityError) -> str:
    """One readable line out of a driver's constraint-violation message."""
    text = str(exc.orig) if exc.orig is not None else str(exc)
    text = text.splitlines()[0]
    match = re.search(r"(duplicate key .*?)(?: violates| but|$)", text, re.IGNORECASE)
    text = match.group(1) if match else text
    # Name the table: a key such as "name: glove" alone does not say where it clashed.
    table = re.search(r"^\s*(?:INSERT INTO|UPDATE)\s+\"?(\w+)", exc.statement or "", re.I)
    return f"{table.group(1)}: {text}" if table else text


@dataclass
class Warehouse:
    """A warehouse folder and the registry it points to.

    Attributes:
        root: The warehouse folder.
        db_url: SQLAlchemy URL of the registry database.
        vectors_location: Where this process reaches the vectors root (a folder or a storage
            URI), overriding the one the registry records; None to use the recorded one.
        read_only: Open a DuckDB registry for reading only (:meth:`reader`).
    """

    root: Path
    db_url: str
    vectors_location: str | None = None
    read_only: bool = False
    _engine: Engine | None = field(default=None, repr=False)
    _vectors: VectorsRoot | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        # Tracebacks and logs show a warehouse through its repr: never the URL's password.
        return (
            f"Warehouse(root={self.root!r}, db_url={shown_url(self.db_url)!r}, "
            f"vectors_location={self.vectors_location!r}, read_only={self.read_only!r})"
        )

    @property
    def default_vectors_root(self) -> Path:
        return self.root / VECTORS_DIRNAME

    @property
    def vectors(self) -> VectorsRoot:
        """The vectors root: the override, else the registry's record, else ``<root>/vectors``."""
        if self._vectors is None:
            self._vectors = self.open_vectors(
                self.vectors_location or stored_vectors_location(self)
            )
        return self._vectors

    def open_vectors(self, location: str | None) -> VectorsRoot:
        """A vectors root at ``location`` (None: the default folder inside the warehouse)."""
        default = self.default_vectors_root
        if location is None or Path(location).expanduser().resolve() == default:
            # The warehouse's own vectors/ keeps its temporary files in the sibling tmp/.
            return VectorsRoot.open(default, tmp_dir=self.root / TMP_DIRNAME)
        return VectorsRoot.open(location)

    @property
    def vectors_root(self) -> Path:
        """The vectors folder (raises when the vectors live in an object store)."""
        return self.vectors.local_path("")

    @property
    def tmp_root(self) -> Path:
        """Where files are written before they are complete (same filesystem as vectors)."""
        return self.vectors.tmp_dir or self.root / TMP_DIRNAME

    @property
    def data_paths(self) -> list[Path]:
        """The registry file (and its log) and the vectors root, where they are files."""
        paths: list[Path] = []
        if self.duckdb_path is not None:
            paths += [self.duckdb_path, self.duckdb_path.with_name(self.duckdb_path.name + ".wal")]
        if self.vectors.is_local:
            paths.append(self.vectors.local_path(""))
        return paths

    @property
    def protected_paths(self) -> list[Path]:
        """What user output files must never land in: the folder, the registry, the vectors."""
        return [self.root, *self.data_paths]

    @property
    def shown_url(self) -> str:
        """The registry URL as messages may print it: the password, if any, as ``***``."""
        return shown_url(self.db_url)

    @property
    def is_duckdb(self) -> bool:
        return self.db_url.startswith("duckdb:")

    @property
    def duckdb_path(self) -> Path | None:
        """The registry file when the registry is a DuckDB file, else None."""
        if not self.is_duckdb:
            return None
        return _file_of(self.db_url)

    @property
    def registry_file(self) -> Path | None:
        """The registry file when the registry is a file (DuckDB or SQLite), else None."""
        if self.is_duckdb or self.db_url.startswith("sqlite:"):
            return _file_of(self.db_url)
        return None

    @property
    def engine(self) -> Engine:
        """The registry engine; connections open per use so other processes can read between."""
        if self._engine is None:
            # duckdb_engine warns (with its source line) each time a registry's indices are
            # reflected; semwh reads its schema from its own models, so the warning says
            # nothing to a user.
            warnings.filterwarnings(
                "ignore", message=".*support reflection on indices", module="duckdb_engine"
            )
            args = {"read_only": True} if self.read_only and self.is_duckdb else {}
            self._engine = create_engine(self.db_url, poolclass=NullPool, connect_args=args)
            event.listen(self._engine, "handle_error", _translate_errors)
        return self._engine

    def reader(self) -> Warehouse:
        """This warehouse with its DuckDB registry opened read-only: checks that only read
        (``semwh verify``) then work on an archived warehouse on a read-only mount or
        without write permission, and never hold the file's write lock."""
        if self.read_only:
            return self
        return Warehouse(
            root=self.root,
            db_url=self.db_url,
            vectors_location=self.vectors_location,
            read_only=True,
        )

    def exists(self) -> bool:
        """Whether the registry is there: its file for a file registry (opening a missing
        SQLite file would create an empty one). A registry on a server is there whether or
        not this machine has the warehouse folder (a lab member who only sets SEMWH_DB
        reads it from anywhere); whether it has a schema is the revision check's to say."""
        if self.registry_file is not None:
            return self.registry_file.exists()
        return True

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose work commits on success and rolls back on any error."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except IntegrityError as exc:
                session.rollback()
                raise DuplicateError(
                    f"registry rejected a duplicate or inconsistent row: "
                    f"{describe_integrity_error(exc)}"
                ) from exc
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def record_vectors_location(wh: Warehouse) -> None:
    """Record ``wh.vectors_location`` as where the warehouse keeps its vectors (``init``).

    Every process that opens the warehouse later (another node of a cluster, say) reads the
    record, so only ``init`` needs to be told. A no-op without a location or when it is
    already recorded.

    Raises:
        WarehouseError: The warehouse already holds vector files somewhere else.
    """
    from sqlalchemy import func

    from semwh.warehouse.models import VectorFile, WarehouseSetting

    if wh.vectors_location is None:
        return
    wanted = wh.open_vectors(wh.vectors_location)
    stored = stored_vectors_location(wh)
    current = wh.open_vectors(stored)
    if wanted.location == current.location:
        return
    with wh.session() as session:
        n_files = session.scalar(select(func.count()).select_from(VectorFile)) or 0
        if n_files:
            raise WarehouseError(
                f"warehouse {wh.root} keeps its vectors at {current.location} and already "
                f"registers {n_files} vector files there; it cannot switch to "
                f"{wanted.location} (pass that location only where this machine reaches the "
                "same files, and not to `semwh init`)"
            )
        session.merge(WarehouseSetting(key=VECTORS_SETTING, value=wanted.location))
    wh._vectors = None


@contextmanager
def peek_registry(wh: Warehouse) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """A read-only connection on a DuckDB registry file, or None where there is none to open.

    Reads that must not block on other readers go through this: DuckDB refuses a read-write
    open while any other process (a notebook, another `semwh sql`) has the file open, even
    only for reading. None when the registry is not a DuckDB file, does not exist, or this
    process already holds it read-write (then ask through ``wh.engine``).

    Raises:
        WarehouseBusyError: Another process holds the file read-write.
    """
    path = wh.duckdb_path
    con = None
    if path is not None and path.exists():
        try:
            con = duckdb.connect(str(path), read_only=True)
        except duckdb.ConnectionException:
            con = None  # this process already holds it read-write
        except duckdb.Error as exc:
            if is_busy_error(exc):
                raise WarehouseBusyError(busy_message(path, exc)) from exc
            raise WarehouseError(f"cannot open {path}: {str(exc).splitlines()[0]}") from exc
    try:
        yield con
    finally:
        if con is not None:
            con.close()


def stored_vectors_location(wh: Warehouse) -> str | None:
    """The vectors root the registry records, or None (the default, or no registry yet)."""
    from semwh.warehouse.models import WarehouseSetting

    if not wh.exists():
        return None
    with peek_registry(wh) as con:
        if con is not None:
            try:
                row = con.execute(
                    "SELECT value FROM warehouse_settings WHERE key = ?", [VECTORS_SETTING]
                ).fetchone()
            except duckdb.CatalogException:
                return None  # a registry from before the settings table: the default root
            return row[0] if row else None
    try:
        with wh.session() as session:
            return session.scalar(
                select(WarehouseSetting.value).where(WarehouseSetting.key == VECTORS_SETTING)
            )
    except (OperationalError, ProgrammingError):
        # A registry older than the settings table (before `semwh db upgrade`) or not yet
        # created: it can only use the default.
        return None


def shown_url(url: str) -> str:
    """``url`` with its password hidden (``***``): a password is never printed or stored."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return url if "@" not in url else "(registry URL not shown: it may hold a password)"


def _file_of(url: str) -> Path | None:
    path = url.split("///", 1)[1] if "///" in url else ""
    return Path(path) if path and path != ":memory:" else None


def _translate_errors(context) -> None:  # type: ignore[no-untyped-def]
    """One line instead of a driver traceback: a busy or read-only DuckDB file, or a
    registry that cannot be reached at all (a refused connection, a missing folder)."""
    exc = context.original_exception
    engine = context.engine
    path = engine.url.database if engine is not None else "the registry"
    if engine is not None and engine.dialect.name == "duckdb":
        _translate_busy(exc, path)
    if context.connection is None and isinstance(exc, Exception):
        where = (
            engine.url.render_as_string(hide_password=True) if engine is not None else "registry"
        )
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        file = _file_of(str(engine.url)) if engine is not None else None
        if engine is not None and engine.dialect.name in ("duckdb", "sqlite") and file:
            hint = f"check that the folder {file.parent} exists and can be written"
        else:
            hint = "check that the server runs and accepts connections at that address"
        raise WarehouseError(
            f"cannot connect to the registry {where} (--db or {ENV_DB}): {first}; {hint}"
        ) from exc


def _translate_busy(exc: BaseException, path: object) -> None:
    if is_busy_error(exc):
        raise WarehouseBusyError(busy_message(path, exc)) from exc
    # A registry on a read-only mount (or without write permission) fails when DuckDB opens
    # it for writing: say so in one line instead of a driver traceback.
    if "read-only file system" in str(exc).lower() or "permission denied" in str(exc).lower():
        raise WarehouseError(
            f"the warehouse is not writable: cannot open {path} for writing "
            f"({str(exc).splitlines()[0]}); mount it read-write, or only read it "
            "(semwh sql, semwh query)"
        ) from exc


_URL_EXAMPLE = "e.g. duckdb:////data/wh/registry.duckdb or postgresql+psycopg://host/db"


def check_db_url(url: str) -> str:
    """A registry URL (``--db`` or ``SEMWH_DB``) that SQLAlchemy can open and that keeps data.

    Raises:
        ConfigError: Not a URL, an unknown database kind, or an in-memory database (which
            would lose everything when the command ends).
        MissingDependencyError: The URL's driver is not installed.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        # Never echo a URL that may hold a password (user:password@host).
        shown = repr(url) if "@" not in url else "(not shown: it may hold a password)"
        reason = f" ({str(exc).splitlines()[0]})" if isinstance(exc, ValueError) else ""
        raise ConfigError(
            f"registry URL {shown} (--db or {ENV_DB}) is not a database URL{reason}: give "
            f"one, {_URL_EXAMPLE}"
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    where = f"registry URL {shown!r} (--db or {ENV_DB})"
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise ConfigError(
            f"{where}: unknown database kind {parsed.drivername!r}; use duckdb, sqlite or "
            f"postgresql, {_URL_EXAMPLE}"
        ) from None
    if parsed.get_backend_name() in ("duckdb", "sqlite") and parsed.database in (
        None,
        "",
        ":memory:",
    ):
        raise ConfigError(
            f"{where} is an in-memory database, which keeps nothing after the command: "
            f"give a file, {_URL_EXAMPLE}"
        )
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        raise MissingDependencyError(
            f"{where} needs the database driver {exc.name or parsed.drivername!r}, which is "
            "not installed: pip install it"
            + (
                " (pip install 'semwh[postgres]' for postgresql+psycopg://, psycopg2-binary "
                "for postgresql://)"
                if parsed.get_backend_name() == "postgresql"
                else ""
            )
        ) from None
    return url


def warehouse_from_settings(settings: Settings) -> Warehouse:
    root = settings.warehouse.resolve()
    if settings.db_url:
        check_db_url(settings.db_url)
    url = settings.db_url or f"duckdb:///{root / REGISTRY_FILENAME}"
    return Warehouse(root=root, db_url=url, vectors_location=settings.vectors)


def registry_error(exc: DBAPIError) -> WarehouseError:
    return WarehouseError(f"registry database error: {str(exc.orig).splitlines()[0]}")
