"""Rerankers for RAG frameworks, each in its own module and each needing its own extra.

==================================================  ================================  =======================
module                                              class                             install
==================================================  ================================  =======================
:mod:`reasonrank.integrations.langchain`            ``ReasonRankRerank``              ``reasonrank[langchain]``
:mod:`reasonrank.integrations.llama_index`          ``ReasonRankRerank``              ``reasonrank[llama-index]``
:mod:`reasonrank.integrations.haystack`             ``ReasonRankRanker``              ``reasonrank[haystack]``
==================================================  ================================  =======================

Nothing here is imported by ``import reasonrank``; importing a module whose framework is missing raises
:class:`~reasonrank.MissingDependencyError` naming the ``pip install`` to run. Every adapter reports the
score of :func:`reasonrank.scores.relevance_score` (``1 / rank``) and returns an empty list for an empty
input. See docs/integrations.md.
"""
