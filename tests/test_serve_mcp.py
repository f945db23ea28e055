"""The reranker as an MCP tool: the real MCP SDK client, in-process and against ``reasonrank serve --mcp``."""

from __future__ import annotations

import asyncio
import sys

from reasonrank import Reranker
from reasonrank.backends import FakeBackend, answer
from reasonrank.serve import create_mcp_server


def reverse(request):
    return answer(list(reversed(range(len(request.docids)))))


def test_rerank_tool_in_process():
    from mcp import Client

    server = create_mcp_server(Reranker(FakeBackend(reverse), progress=False), max_documents=5)

    async def main():
        async with Client(server) as client:
            tools = (await client.list_tools()).tools
            ok = await client.call_tool("rerank", {"query": "q", "documents": ["a", "b", "c"], "top_n": 2})
            empty = await client.call_tool("rerank", {"query": "q", "documents": []})
            too_many = await client.call_tool("rerank", {"query": "q", "documents": ["x"] * 6})
            bad_query = await client.call_tool("rerank", {"query": " ", "documents": ["a", "b"]})
            return tools, ok, empty, too_many, bad_query

    tools, ok, empty, too_many, bad_query = asyncio.run(main())
    assert [t.name for t in tools] == ["rerank"]
    assert set(tools[0].input_schema["required"]) == {"query", "documents"}
    assert not ok.is_error
    assert ok.structured_content["result"] == [
        {"index": 2, "relevance_score": 1.0, "text": "c"},
        {"index": 1, "relevance_score": 0.5, "text": "b"},
    ]
    assert not empty.is_error and empty.structured_content["result"] == []
    assert too_many.is_error and "6 documents" in too_many.content[0].text
    assert bad_query.is_error and "query is empty" in bad_query.content[0].text


def test_serve_mcp_over_stdio():
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "reasonrank", "serve", "--backend", "fake", "--mcp", "--window", "2", "--step", "1"],
    )

    async def main():
        async with Client(params) as client:
            return await client.call_tool("rerank", {"query": "q", "documents": ["a", "b", "c"]})

    result = asyncio.run(main())
    assert not result.is_error
    # the fake model keeps each window's order
    assert [d["index"] for d in result.structured_content["result"]] == [0, 1, 2]


def test_missing_mcp_names_the_extra(monkeypatch):
    import pytest

    from reasonrank import MissingDependencyError

    monkeypatch.setitem(sys.modules, "mcp.server.mcpserver", None)
    with pytest.raises(MissingDependencyError, match=r"reasonrank\[mcp\]"):
        create_mcp_server(Reranker(FakeBackend(), progress=False))
