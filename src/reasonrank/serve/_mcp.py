"""The reranker as a Model Context Protocol tool (extra ``mcp``): ``reasonrank serve --mcp`` speaks it on stdio."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from .._errors import MissingDependencyError, ReasonRankError
from ..reranker import Reranker
from ._protocol import relevance_score

__all__ = ["RankedDocument", "create_mcp_server"]


class RankedDocument(BaseModel):
    """One document of the tool's answer, best first."""

    index: int  # position in the documents sent
    relevance_score: float  # 1 / rank (see relevance_score)
    text: str


def create_mcp_server(
    reranker: Reranker,
    *,
    name: str = "reasonrank",
    window: int = 20,
    step: int = 10,
    top_k: int | None = None,
    strategy: str = "sliding",
    window_mode: str = "fixed",
    max_documents: int = 1000,
) -> Any:
    """An MCP server (``mcp.server.mcpserver.MCPServer``) with one tool, ``rerank(query, documents, top_n)``.

    The tool returns the documents best first as :class:`RankedDocument` (``index``, ``relevance_score`` =
    ``1 / rank``, ``text``), cut to ``top_n``. Run it with ``server.run("stdio")`` (what ``reasonrank serve
    --mcp`` does) or any transport the MCP SDK offers.
    """
    try:
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError
    except ImportError:
        raise MissingDependencyError("mcp", "mcp", "Serving the reranker as an MCP tool") from None

    server = MCPServer(
        name,
        instructions=(
            "rerank orders documents by relevance to a query with a listwise reasoning reranker. Send the "
            "candidate passages from a first-stage search and keep the top ones."
        ),
    )

    @server.tool()
    async def rerank(query: str, documents: list[str], top_n: int | None = None) -> list[RankedDocument]:
        """Order ``documents`` by relevance to ``query``, best first; only the first ``top_n`` if given."""
        # ToolError: the message reaches the client (other exceptions' text stays on the server).
        if len(documents) > max_documents:
            raise ToolError(f"{len(documents)} documents is more than the limit of {max_documents}")
        if top_n is not None and top_n < 1:
            raise ToolError(f"top_n must be at least 1, got {top_n}")
        if not documents:
            return []
        try:
            ranking = await reranker.arerank(
                query, documents, window=window, step=step, top_k=top_k, strategy=strategy, window_mode=window_mode
            )
        except ReasonRankError as e:
            raise ToolError(str(e)) from None
        ranked = [
            RankedDocument(index=p.index, relevance_score=relevance_score(rank), text=p.text)
            for rank, p in enumerate(ranking.passages, start=1)
        ]
        return ranked if top_n is None else ranked[:top_n]

    return server
