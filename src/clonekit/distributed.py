"""Scale-out on Ray (the optional extra ``clonekit[ray]``): collection, rollouts and sweeps as Ray tasks.

Nothing here schedules or transports anything itself: work is split along boundaries the local code
already has (collection batches, rollout waves, experiment cells), each piece runs as a plain Ray task, and
the driver combines the results in submission order, so a Ray run gives the same output as a local one.

``address=None`` starts a private local Ray instance (quiet: no dashboard, worker logs not forwarded);
any other address (``auto``, ``ray://host:10001``, ``host:6379``) connects to an existing cluster. On a
cluster of several machines, every node needs clonekit installed, and the paths passed to clonekit (run
directories, experiment output) must be on a filesystem that all nodes see.
"""

from __future__ import annotations

import logging
import socket
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any, TypeVar

from clonekit.errors import ClonekitError, ConfigError

T = TypeVar("T")

RAY_MISSING = "--ray: Ray is not installed; install it with: pip install 'clonekit[ray]'"


def import_ray() -> ModuleType:
    """The ``ray`` module, or a one-line :class:`ConfigError` saying how to install it."""
    try:
        import ray
    except ImportError as err:
        raise ConfigError(RAY_MISSING) from err
    return ray


def init_ray(address: str | None = None, workers: int | None = None) -> ModuleType:
    """Connect this process to Ray once (later calls reuse the connection); returns the ``ray`` module.

    Args:
        address: ``None`` starts a local Ray instance with ``workers`` CPUs (all cores when ``None``);
            otherwise the address of a running cluster (``RAY_ADDRESS`` is ignored when ``None``).
        workers: CPUs of the local instance; ignored when connecting to a cluster.
    """
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers: expected >= 1, got {workers}")
    ray = import_ray()
    if ray.is_initialized():
        return ray
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address is not None:
        _check_reachable(address)
    try:
        if address is None:
            ray.init(address="local", num_cpus=workers, include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as err:
        detail = " ".join(str(err).split())
        if address is None:
            raise ConfigError(f"--ray: could not start a local Ray instance: {detail}") from err
        raise ConfigError(f"--ray-address {address}: could not connect to the Ray cluster: {detail}") from err
    return ray


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast, in one line, when a ``host:port`` address does not answer (Ray itself retries for minutes)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "local" and the like: Ray resolves them and fails fast itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise ConfigError(f"--ray-address {address}: no Ray cluster answers there ({err})") from err


def cluster_cpus() -> int:
    """Number of CPUs in the connected Ray cluster (at least 1)."""
    ray = import_ray()
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def ordered_map(
    fn: Callable[..., T],
    calls: Iterable[tuple[Any, ...]],
    workers: int | None = None,
    num_cpus: float = 1,
) -> Iterator[T]:
    """Run ``fn(*args)`` for every ``args`` in ``calls`` as Ray tasks; yield the results in ``calls`` order.

    At most ``workers`` tasks (default: one per CPU of the cluster) are submitted and not yet consumed at a
    time, which also bounds how many results wait in memory. A :class:`ClonekitError` raised inside a task
    is re-raised here as itself (one line, no remote traceback). Ray must already be initialized.
    """
    ray = import_ray()
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers: expected >= 1, got {workers}")
    window = workers or cluster_cpus()
    task = ray.remote(num_cpus=num_cpus, max_retries=0)(fn)
    pending: deque[Any] = deque()

    def next_result() -> T:
        try:
            result: T = ray.get(pending.popleft())
            return result
        except ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, ClonekitError):
                raise cause from None
            raise

    try:
        for args in calls:
            if len(pending) >= window:
                yield next_result()
            pending.append(task.remote(*args))
        while pending:
            yield next_result()
    finally:
        for ref in pending:  # stopped early (error or consumer gave up): do not leave work running
            ray.cancel(ref)


def put(value: Any) -> Any:
    """Store ``value`` once in the Ray object store (tasks given the reference receive the value)."""
    return import_ray().put(value)


__all__ = ["RAY_MISSING", "cluster_cpus", "import_ray", "init_ray", "ordered_map", "put"]
