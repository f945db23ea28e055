"""``reasonrank serve``: a reranker behind the Cohere, Jina/vLLM and TEI rerank APIs (extra ``serve``).

Examples:
    >>> from reasonrank import Reranker
    >>> from reasonrank.backends import FakeBackend
    >>> from reasonrank.serve import create_app, relevance_score
    >>> app = create_app(Reranker(FakeBackend(), progress=False))
    >>> relevance_score(2)
    0.5

See docs/serving.md for the endpoints, their formats and the server's limits.
"""

from .._errors import MissingDependencyError

try:
    import prometheus_client  # noqa: F401
    import pydantic  # noqa: F401
    import starlette  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise MissingDependencyError(e.name or "starlette", "serve", "Serving a reranker over HTTP") from None

from ._app import ServeSettings, create_app
from ._mcp import RankedDocument, create_mcp_server
from ._protocol import relevance_score

__all__ = ["RankedDocument", "ServeSettings", "create_app", "create_mcp_server", "relevance_score"]
