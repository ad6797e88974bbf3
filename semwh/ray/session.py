"""Connecting to Ray: the one place ``ray`` is imported and ``ray.init`` is called.

Ray is an optional extra (``pip install 'semwh[ray]'``), so it is imported lazily here and only
when the ray backend runs; everything else in semwh works without it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from semwh.errors import ConfigError, MissingDependencyError

# "engine" is the other spelling of the CLI's --backend option.
RAY_HINT = "the ray engine needs Ray: pip install 'semwh[ray]'"

#: A local Ray started by semwh stays small: it shares the machine with the driver.
LOCAL_NUM_CPUS = 2
LOCAL_OBJECT_STORE_BYTES = 500 * 1024**2


def import_ray() -> Any:
    """The ``ray`` module with Ray Data loaded.

    Raises:
        MissingDependencyError: Ray (or Ray Data) is not installed.
    """
    try:
        import ray
        import ray.data  # noqa: F401  (the extraction backend needs Ray Data)
    except ImportError as exc:
        raise MissingDependencyError(f"{RAY_HINT} ({exc})") from exc
    return ray


@contextmanager
def ray_session(
    address: str | None = None,
    *,
    num_cpus: int = LOCAL_NUM_CPUS,
    object_store_memory: int = LOCAL_OBJECT_STORE_BYTES,
) -> Iterator[Any]:
    """Ray, connected for the duration of the block.

    A Ray already initialised in this process (a notebook, a test fixture, a script run under
    ``ray job submit`` that called ``ray.init``) is used as it is and left running. Otherwise
    ``address`` (``auto``, ``HOST:PORT`` or ``ray://HOST:10001``) is connected to; with no
    address, a cluster named by ``RAY_ADDRESS`` (set by ``ray job submit``) is joined, and
    failing that a small local Ray is started (``num_cpus`` CPUs, the GPUs it finds, no
    dashboard, worker logs not forwarded). Ray started or connected here is shut down at the
    end of the block.

    Yields:
        The ``ray`` module.

    Raises:
        MissingDependencyError: Ray is not installed.
        ConfigError: The cluster at ``address`` cannot be reached.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    common: dict[str, Any] = {
        "log_to_driver": False,
        "logging_level": logging.WARNING,
        "configure_logging": True,
    }
    try:
        if address:
            ray.init(address=address, **common)
        else:
            try:
                ray.init(
                    num_cpus=num_cpus,
                    include_dashboard=False,
                    object_store_memory=object_store_memory,
                    **common,
                )
            except ValueError as exc:
                # RAY_ADDRESS names a running cluster, whose resources are its own.
                if "existing cluster" not in str(exc):
                    raise
                ray.init(**common)
    except ConnectionError as exc:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address or 'RAY_ADDRESS'}: {exc}; start one "
            "with `ray start --head` and pass its address (--ray-address HOST:6379), or leave "
            "--ray-address out to start a local Ray"
        ) from exc
    _quiet_ray_data(ray)
    try:
        yield ray
    finally:
        ray.shutdown()


def _quiet_ray_data(ray: Any) -> None:
    """No Ray Data progress bars: the backends report to the caller's ``progress``."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    if hasattr(context, "print_on_execution_start"):
        context.print_on_execution_start = False


def semwh_cause(exc: BaseException) -> BaseException | None:
    """The semwh error a Ray task raised, unwrapped from Ray's exception (None if none)."""
    from semwh.errors import SemwhError

    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        # Ray's task errors subclass the original error but carry a traceback in their text.
        cause = getattr(current, "cause", None)
        if isinstance(cause, SemwhError):
            return cause
        if isinstance(current, SemwhError):
            return current
        stack.extend([current.__cause__, current.__context__, getattr(current, "cause", None)])
    return None
