"""Connecting to a Ray cluster (or starting a local one), checking its resources, and reading Ray's errors."""

from __future__ import annotations

import contextlib
import logging
import socket
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

from .._errors import InvalidInputError, MissingDependencyError

__all__ = ["check_resources", "import_ray", "ray_cluster"]

logger = logging.getLogger(__name__)

#: What ``address`` means "start a local cluster" (Ray's own spelling is ``None``).
LOCAL = ("local", "")


def import_ray() -> Any:
    """``ray`` with Ray Data, or :class:`MissingDependencyError` naming the extra to install."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise MissingDependencyError("ray[data]", "ray", "Reranking on a Ray cluster") from None
    return ray


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast, with the address in the message, when nothing listens at ``host:port``.

    Ray's own ``ray.init(address=...)`` keeps retrying for a long time before it gives up on an address that
    does not answer; a plain TCP connection says at once. ``auto`` and ``ray://`` (Ray Client) addresses are
    left to Ray.
    """
    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise InvalidInputError(
            f"Ray address {address!r} is not host:port (e.g. 10.0.0.5:6379), 'auto', or ray://host:10001"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise InvalidInputError(
            f"cannot reach a Ray cluster at {address} ({e.strerror or e}); start one there with `ray start --head "
            f"--port {port}`, check the address (`ray status` on the head node prints it), or leave the address "
            "out to start a local cluster"
        ) from None


@contextlib.contextmanager
def ray_cluster(address: str | None = None, *, init_options: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """Use the Ray cluster at ``address`` for the duration of the block; yields the ``ray`` module.

    ``address=None`` (or ``"local"``) starts a local cluster on this machine and stops it afterwards;
    ``"auto"`` joins the cluster started on this node with ``ray start``; ``"host:port"`` joins the cluster
    whose head listens there; ``"ray://host:10001"`` goes through Ray Client. When this process is already
    connected (``ray.init`` was called before), that connection is used and left open. ``init_options``
    go to ``ray.init`` (e.g. ``num_cpus`` or ``object_store_memory`` for a local cluster).
    """
    ray = import_ray()
    remote = address is not None and address not in LOCAL
    if remote:
        _check_reachable(address)  # type: ignore[arg-type]
    if ray.is_initialized():
        if remote:
            warnings.warn(f"this process is already connected to a Ray cluster; using it, not {address}", stacklevel=3)
        yield ray
        return
    options = dict(init_options or {})
    if remote:
        options["address"] = address
    options.setdefault("include_dashboard", False)
    options.setdefault("logging_level", logging.WARNING)
    try:
        ray.init(**options)
    except ConnectionError as e:
        raise InvalidInputError(f"cannot connect to the Ray cluster at {address}: {e}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def check_resources(ray: Any, *, replicas: int, num_gpus: float, num_cpus: float) -> None:
    """Refuse a job that asks for more GPUs (or CPUs) than the cluster has: it would wait forever."""
    total = ray.cluster_resources()
    for name, each in (("GPU", num_gpus), ("CPU", num_cpus)):
        needed = replicas * each
        have = float(total.get(name, 0))
        if needed > have:
            raise InvalidInputError(
                f"{replicas} replicas x {each:g} {name}s each need {needed:g} {name}s, but the Ray cluster has "
                f"{have:g}; use fewer replicas (--replicas), fewer {name}s per replica, or a bigger cluster"
                + (" (add GPU nodes, or `ray start --num-gpus N` on each)" if name == "GPU" else "")
            )
