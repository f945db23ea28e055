"""What every framework adapter shares: the relevance_score function, lazy imports, missing-extra errors."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest

from reasonrank import InvalidInputError, RankedPassage, Ranking
from reasonrank.scores import relevance_score

ADAPTERS = [
    ("langchain", "langchain_core", "langchain"),
    ("llama_index", "llama_index", "llama-index"),
    ("haystack", "haystack", "haystack"),
]


def test_relevance_score_is_reciprocal_rank_in_0_1_and_strictly_decreasing():
    scores = [relevance_score(rank) for rank in range(1, 1001)]
    assert scores[:4] == [1.0, 0.5, 1 / 3, 0.25]
    assert all(0 < s <= 1 for s in scores)
    assert all(a > b for a, b in itertools.pairwise(scores))


@pytest.mark.parametrize("rank", [0, -1, 1.0, True, "1", None])
def test_relevance_score_refuses_what_is_not_a_rank(rank):
    with pytest.raises(InvalidInputError, match="rank must be an int >= 1"):
        relevance_score(rank)


def test_ranking_relevance_scores_follow_the_new_order():
    ranking = Ranking("q", [RankedPassage("b", "B", 1), RankedPassage("c", "C", 2), RankedPassage("a", "A", 0)])
    assert ranking.relevance_scores() == [1.0, 0.5, 1 / 3]
    assert Ranking("q", []).relevance_scores() == []


def test_import_reasonrank_loads_no_framework():
    code = (
        "import sys, reasonrank, reasonrank.integrations\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'langchain_core', 'llama_index', 'haystack'})\n"
        "print(','.join(loaded))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


@pytest.mark.parametrize(("module", "package", "extra"), ADAPTERS)
def test_a_missing_framework_names_the_extra_to_install(module, package, extra):
    # None in sys.modules makes "import package" raise ImportError, as if it were not installed.
    code = (
        f"import sys; sys.modules[{package!r}] = None\n"
        "from reasonrank import MissingDependencyError\n"
        "try:\n"
        f"    import reasonrank.integrations.{module}\n"
        "except MissingDependencyError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert f"pip install 'reasonrank[{extra}]'" in out
