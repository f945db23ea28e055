"""Backends by name: built-ins, explicit registrations and ``reasonrank.backends`` entry points."""

from __future__ import annotations

import importlib
from typing import Any

from .._errors import UnknownNameError
from ._base import Backend

__all__ = ["ENTRY_POINT_GROUP", "available_backends", "get_backend_class", "register_backend"]

ENTRY_POINT_GROUP = "reasonrank.backends"

# Built-ins are "module:attribute" strings so that naming one imports nothing heavy until it is used.
_BACKENDS: dict[str, type[Backend] | str] = {
    "fake": "reasonrank.backends.fake:FakeBackend",
    "hf": "reasonrank.backends.hf:HFBackend",
    "vllm": "reasonrank.backends.vllm:VLLMBackend",
    "openai": "reasonrank.backends.openai_compat:OpenAIBackend",
}
_entry_points_loaded = False


def register_backend(name: str, backend: type[Backend] | str) -> None:
    """Register a backend class (or a lazy ``"package.module:Class"`` path) under ``name``."""
    _BACKENDS[name] = backend


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _BACKENDS.setdefault(ep.name, ep.value)


def available_backends() -> list[str]:
    """Names of every known backend, third-party entry points included (none is imported)."""
    _load_entry_points()
    return sorted(_BACKENDS)


def _resolve(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr) if attr else module


def get_backend_class(name: str) -> type[Backend]:
    """The backend class registered as ``name`` (imported on first use)."""
    if name not in _BACKENDS:
        _load_entry_points()
    try:
        entry = _BACKENDS[name]
    except (KeyError, TypeError):
        raise UnknownNameError(
            "backend",
            name,
            available_backends(),
            hint=f"third-party backends register under the '{ENTRY_POINT_GROUP}' entry-point group",
        ) from None
    if isinstance(entry, str):
        entry = _resolve(entry)
        _BACKENDS[name] = entry
    return entry
