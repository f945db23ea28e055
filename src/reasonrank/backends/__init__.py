"""Model backends: Hugging Face transformers (``hf``), a fake one for tests, and plugins.

A backend turns a batch of :class:`GenerationRequest` into one :class:`Generation` each, in order. Third-party
backends register under the ``reasonrank.backends`` entry-point group, e.g. in ``pyproject.toml``::

    [project.entry-points."reasonrank.backends"]
    mybackend = "my_package.module:MyBackend"
"""

from ._base import Backend, Generation, GenerationRequest
from ._registry import ENTRY_POINT_GROUP, available_backends, get_backend_class, register_backend
from .fake import FakeBackend, answer

__all__ = [
    "ENTRY_POINT_GROUP",
    "Backend",
    "FakeBackend",
    "Generation",
    "GenerationRequest",
    "answer",
    "available_backends",
    "get_backend_class",
    "register_backend",
]
