"""Metrics against trec_eval's own test fixture, hand-computed values, and the rbo package's outputs."""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from pathlib import Path

import pytest

from reasonrank import InvalidInputError, ReasonRankError, UnknownNameError
from reasonrank.metrics import check_metrics, evaluate, percent, rbo, trec_order

FIXTURES = Path(__file__).parent / "fixtures"

# Values of trec_eval 10's out.test.a that pytrec_eval (trec_eval 9 inside) cannot reproduce:
# trec_eval 10 changed how iprec_at_recall cutoffs are computed (commit 2a9e214, "use lround"), which also moves
# 11pt_avg; rbp, rbp_resid and unj_* were added to all_trec in trec_eval 10 and pytrec_eval does not have them.
NOT_IN_PYTREC_EVAL_9 = {"iprec_at_recall_0.10", "iprec_at_recall_0.60", "11pt_avg"}
NEW_IN_TREC_EVAL_10 = {"rbp", "rbp_resid", "unj_5", "unj_10", "unj_20"}


def _load_fixture(shared_data: Path) -> tuple[dict, dict, dict[str, str], dict[str, str]]:
    folder = shared_data / "trec_eval_fixture"
    qrels: dict = defaultdict(dict)
    for line in (folder / "qrels.test").read_text().splitlines():
        qid, _, docid, rel = line.split()
        qrels[qid][docid] = int(rel)
    run: dict = defaultdict(dict)
    for line in (folder / "results.test").read_text().splitlines():
        qid, _, docid, _, score, _ = line.split()
        run[qid][docid] = float(score)

    def printed(name: str) -> dict[str, str]:
        out = {}
        for line in (folder / name).read_text().splitlines():
            measure, _, value = line.split()
            out[measure] = value
        return out

    return dict(run), dict(qrels), printed("out.test"), printed("out.test.a")


def _trec_eval_format(measure: str, value: float) -> str:
    return str(round(value)) if measure.startswith("num_") else f"{value:.4f}"


@pytest.fixture(scope="module")
def trec_fixture(shared_data):
    return _load_fixture(shared_data)


def test_reproduces_trec_eval_printed_values(trec_fixture):
    run, qrels, summary, all_trec = trec_fixture
    measures = [m for m in all_trec if m != "runid" and m not in NEW_IN_TREC_EVAL_10]
    values = evaluate(run, qrels, measures)
    mismatched = {m for m in measures if _trec_eval_format(m, values[m]) != all_trec[m]}
    assert mismatched == NOT_IN_PYTREC_EVAL_9
    assert len(measures) - len(mismatched) == 90  # everything else, num_* sums and gm_* geometric means included
    for measure, printed in summary.items():
        if measure != "runid" and measure not in NOT_IN_PYTREC_EVAL_9:
            assert _trec_eval_format(measure, values[measure]) == printed, measure


def test_friendly_names_are_the_trec_eval_measures(trec_fixture):
    run, qrels, _, printed = trec_fixture
    pairs = {
        "nDCG@10": "ndcg_cut_10",
        "nDCG@5": "ndcg_cut_5",
        "ndcg": "ndcg",
        "R@100": "recall_100",
        "Recall@10": "recall_10",
        "P@5": "P_5",
        "MAP": "map",
        "AP@100": "map_cut_100",
        "RR": "recip_rank",
        "MRR": "recip_rank",
        "Success@10": "success_10",
        "R-Prec": "Rprec",
        "Bpref": "bpref",
    }
    values = evaluate(run, qrels, list(pairs))
    assert list(values) == list(pairs)  # keys as given, in order
    for friendly, raw in pairs.items():
        assert f"{values[friendly]:.4f}" == printed[raw], friendly
    assert evaluate(run, qrels, "ndcg_cut.10") == {"ndcg_cut.10": values["nDCG@10"]}


def test_per_query_values_average_to_the_summary(trec_fixture):
    run, qrels, _, _ = trec_fixture
    per = evaluate(run, qrels, ["nDCG@10", "gm_map", "num_ret"], per_query=True)
    assert sorted(per) == ["301", "302", "303"]
    mean = evaluate(run, qrels, ["nDCG@10", "gm_map", "num_ret"])
    assert math.isclose(mean["nDCG@10"], sum(p["nDCG@10"] for p in per.values()) / 3)
    assert mean["num_ret"] == sum(p["num_ret"] for p in per.values()) == 1500
    assert math.isclose(mean["gm_map"], math.exp(sum(p["gm_map"] for p in per.values()) / 3))


def _reciprocal_rank(ranked: list[str], relevant: set[str], k: int | None = None) -> float:
    for i, docid in enumerate(ranked[:k] if k else ranked, start=1):
        if docid in relevant:
            return 1 / i
    return 0.0


def test_rr_at_k_cuts_the_run_in_trec_eval_order(trec_fixture):
    run, qrels, _, _ = trec_fixture
    for k in (1, 3, 10, 50):
        per = evaluate(run, qrels, f"RR@{k}", per_query=True)
        for qid, values in per.items():
            relevant = {d for d, r in qrels[qid].items() if r >= 1}
            assert values[f"RR@{k}"] == _reciprocal_rank(trec_order(run[qid]), relevant, k)
    values = evaluate(run, qrels, ["RR@1", "Success@1", "RR@1000", "RR", "RR@10"])
    assert values["RR@1"] == values["Success@1"]
    assert values["RR@1000"] == values["RR"]  # 500 documents per query: the cut changes nothing
    assert values["RR@10"] < values["RR"]  # one query's first relevant document is below rank 10


def test_rr_at_k_breaks_ties_at_the_cutoff_by_docid():
    # Three documents tie; trec_eval ranks them c, b, a (docid descending), so only c is in the top 1.
    run = {"q": {"a": 1.0, "b": 1.0, "c": 1.0}}
    assert evaluate(run, {"q": {"a": 1}}, ["RR@1", "RR@2", "RR"]) == {"RR@1": 0.0, "RR@2": 0.0, "RR": 1 / 3}
    assert evaluate(run, {"q": {"c": 1}}, ["RR@1"]) == {"RR@1": 1.0}


def test_trec_order_matches_pytrec_eval_on_ties_and_near_ties():
    # Scores drawn from a few values, some apart by less than float32 resolution: pytrec_eval compares
    # 32-bit floats and breaks ties by docid descending; trec_order must agree with it document by document.
    rng = random.Random(7)
    for trial in range(200):
        docs = [f"d{rng.randint(0, 99):02d}x{i}" for i in range(rng.randint(1, 12))]
        base = [0.5, 0.5 + 1e-10, 0.25, 1.0, 1.0 + 1e-7]
        run = {"q": {d: rng.choice(base) for d in docs}}
        order = trec_order(run["q"])
        for position, target in enumerate(order, start=1):
            got = evaluate(run, {"q": {target: 1}}, "RR")["RR"]
            assert got == 1 / position, (trial, run, order, target)
    assert trec_order({"a": 0.5, "b": 0.5 + 1e-10}) == ["b", "a"]  # a tie in float32: docid decides
    assert trec_order({"b": 0.5, "a": 0.5 + 1e-6}) == ["a", "b"]  # a real difference: score decides


def test_average_policies():
    run = {"q1": {"d1": 2.0, "d2": 1.0}, "q2": {"d3": 1.0}, "unjudged": {"x": 1.0}}
    qrels = {"q1": {"d2": 1}, "q2": {"d3": 2}, "q3": {"d9": 1}}
    both = evaluate(run, qrels, ["RR", "nDCG@10"])
    assert both == {"RR": (0.5 + 1.0) / 2, "nDCG@10": (1 / math.log2(3) + 1.0) / 2}
    over_qrels = evaluate(run, qrels, ["RR", "nDCG@10"], average="qrels")
    assert over_qrels == {"RR": (0.5 + 1.0 + 0.0) / 3, "nDCG@10": (1 / math.log2(3) + 1.0 + 0.0) / 3}
    per = evaluate(run, qrels, "RR", per_query=True, average="qrels")
    assert per == {"q1": {"RR": 0.5}, "q2": {"RR": 1.0}, "q3": {"RR": 0.0}}
    with pytest.raises(InvalidInputError, match="average must be"):
        evaluate(run, qrels, "RR", average="all")  # type: ignore[call-overload]


def test_unjudged_run_queries_are_reported(caplog):
    with caplog.at_level("WARNING", logger="reasonrank.metrics"):
        evaluate({"q1": {"d": 1.0}, "zz": {"d": 1.0}}, {"q1": {"d": 1}}, "RR")
    assert "1 of 2 run queries have no judgments" in caplog.text and "'zz'" in caplog.text


def test_graded_relevance_and_relevance_level():
    run = {"q": {"a": 2.0, "b": 1.0}}
    qrels = {"q": {"a": 1, "b": 2}}
    ndcg = evaluate(run, qrels, "nDCG@2")["nDCG@2"]
    assert math.isclose(ndcg, (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    assert evaluate(run, qrels, "P@1", relevance_level=2) == {"P@1": 0.0}
    assert evaluate(run, qrels, "P@1") == {"P@1": 1.0}


def test_int_ids_are_accepted_as_strings():
    assert evaluate({1: {7: 1.0}}, {"1": {"7": 1}}, "RR") == {"RR": 1.0}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nDCG@0", "unknown metric 'nDCG@0'"),
        ("nDCG@x", "unknown metric"),
        ("R-Prec@5", "takes no cutoff"),
        ("Foo@10", "valid names: nDCG@k"),
        ("P", "needs a cutoff, e.g. P@10"),
        ("recall", "needs a cutoff"),
        ("ndcg_cut", "needs a cutoff, e.g. ndcg_cut_10"),
        ("map_7", "takes no cutoff"),
        ("bogus_measure", "trec_eval names work too"),
        ("", "non-empty"),
    ],
)
def test_bad_metric_names(name, message):
    with pytest.raises(InvalidInputError, match=message):
        evaluate({"q": {"d": 1.0}}, {"q": {"d": 1}}, [name])


def test_unknown_metric_is_an_unknown_name_error():
    with pytest.raises(UnknownNameError) as info:
        evaluate({"q": {"d": 1.0}}, {"q": {"d": 1}}, "nDCG@ten")
    assert "R@k" in str(info.value) and info.value.kind == "metric"


@pytest.mark.parametrize(
    ("run", "qrels", "message"),
    [
        ({"q": {"d": float("nan")}}, {"q": {"d": 1}}, "finite number"),
        ({"q": {"d": "1.0"}}, {"q": {"d": 1}}, "finite number"),
        ({"q": {"d": 1.0}}, {"q": {"d": 1.5}}, "integer relevance"),
        ({"q": [("d", 1.0)]}, {"q": {"d": 1}}, "must be a mapping"),
        ({"q1": {"d": 1.0}}, {"Q1": {"d": 1}}, "no query is in both the run and the qrels"),
        ({"q": {1.5: 1.0}}, {"q": {"d": 1}}, "must be a str"),
    ],
)
def test_bad_runs_and_qrels(run, qrels, message):
    with pytest.raises(InvalidInputError, match=message):
        evaluate(run, qrels, "RR")


def test_percent_conventions():
    assert percent(0.30588298637521365) == "30.59"
    assert percent(0.3168495743930911) == "31.68"
    assert percent(0.3168495743930911, convention="beir") == "31.69"
    with pytest.raises(InvalidInputError):
        percent(0.5, convention="trec")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ RBO


def _rbo_eq32(a: list, b: list, p: float) -> float:
    """Webber et al. (2010) eq. 32, transcribed term by term (X_d: overlap of L[:d] with S[:min(d, s)])."""
    long, short = (a, b) if len(a) >= len(b) else (b, a)
    l, s = len(long), len(short)  # noqa: E741 - the paper's names
    x = {d: len(set(long[:d]) & set(short[: min(d, s)])) for d in range(1, l + 1)}
    first = sum(x[d] / d * p**d for d in range(1, l + 1))
    second = sum(x[s] * (d - s) / (s * d) * p**d for d in range(s + 1, l + 1))
    return (1 - p) / p * (first + second) + ((x[l] - x[s]) / l + x[s] / s) * p**l


def test_rbo_extrapolated_for_lists_of_unequal_length_follows_the_paper():
    """Issue 9: eq. 32 of Webber et al. (2010); rbo 0.1.3's extrapolation gives 0.3915 here."""
    assert round(rbo(list("NHMACFL"), list("CGNA"), p=0.9, extrapolate=True), 6) == 0.490384
    assert rbo(list("CGNA"), list("NHMACFL"), p=0.9, extrapolate=True) == rbo(
        list("NHMACFL"), list("CGNA"), p=0.9, extrapolate=True
    )
    # depth cuts both lists first: equal lengths then, and eq. 32 is eq. 30
    assert rbo(list("NHMACFL"), list("CGNA"), p=0.9, depth=4, extrapolate=True) == rbo(
        list("NHMA"), list("CGNA"), p=0.9, extrapolate=True
    )
    # identical prefixes: a list and its own extension agree as far as the shorter one goes
    assert rbo(list("abcdef"), list("abc"), p=0.9, extrapolate=True) == pytest.approx(1.0)
    with pytest.raises(InvalidInputError, match="hashable"):
        rbo([["a"]], [["b"]])


def test_rbo_matches_the_rbo_package():
    """Expected values come from the unmodified rbo 0.1.3 package (see tests/fixtures/README.md)."""
    data = json.loads((FIXTURES / "rbo_0.1.3_vectors.json").read_text())
    assert data["version"] == "0.1.3" and len(data["cases"]) > 40
    for case in data["cases"]:
        a, b = case["a"], case["b"]
        assert rbo(a, b, p=1.0) == case["default"], (a, b)  # bit for bit: same recurrence
        for p, expected in case["p"].items():
            assert rbo(a, b, p=float(p)) == expected["plain"]
            if len(a) == len(b) or not a or not b:
                assert rbo(a, b, p=float(p), extrapolate=True) == expected["ext"]
            else:  # rbo 0.1.3 does not implement eq. 32 for lists of unequal length; the paper is the reference
                assert rbo(a, b, p=float(p), extrapolate=True) == pytest.approx(_rbo_eq32(a, b, float(p)), abs=1e-12)
        if "depth3" in case:
            assert rbo(a, b, p=1.0, depth=3) == case["depth3"]["p1"]
            assert rbo(a, b, p=0.9, depth=3) == case["depth3"]["p0.9"]
            assert rbo(a, b, p=0.9, depth=3, extrapolate=True) == case["depth3"]["p0.9_ext"]


def test_rbo_reward_term_from_the_model_reference():
    # model-reference §3.3: identity order vs teacher "[3] > [7] > [15] > [1] > ..." has average overlap 0.765.
    teacher = ["3", "7", "15"] + [str(i) for i in range(1, 21) if i not in (3, 7, 15)]
    identity = [str(i) for i in range(1, 21)]
    assert round(rbo(identity, teacher, p=1.0), 3) == 0.765
    assert rbo(teacher, teacher, p=1.0) == 1.0
    # average overlap by its definition: mean over depths of |prefix overlap| / depth
    by_definition = sum(len(set(identity[:d]) & set(teacher[:d])) / d for d in range(1, 21)) / 20
    assert math.isclose(rbo(identity, teacher, p=1.0), by_definition)


def test_rbo_edge_cases_and_errors():
    assert rbo([], []) == 1.0
    assert rbo(["a"], []) == 0.0
    assert rbo(["a", "b"], ["a", "b", "c"], p=0.9, extrapolate=True) == pytest.approx(1.0)
    for bad in (dict(p=0.0), dict(p=1.5), dict(depth=0)):
        with pytest.raises(InvalidInputError):
            rbo(["a"], ["a"], **bad)
    with pytest.raises(InvalidInputError, match="duplicate"):
        rbo(["a", "a"], ["a"])
    with pytest.raises(InvalidInputError, match="list of items"):
        rbo("abc", ["a"])  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- issue 9 examples


def test_a_query_with_empty_qrels_is_skipped_like_an_unjudged_query():
    run = {q: {"d1": 3.0, "d2": 2.0, "d3": 1.0} for q in ("q1", "q2", "q3")}
    qrels = {"q1": {"d1": 0, "d2": 1, "d3": 0}, "q2": {}, "q3": {"d2": 1, "d3": 1}}
    means = evaluate(run, qrels, ["MAP", "nDCG"])
    assert round(means["MAP"], 6) == 0.541667 and round(means["nDCG"], 6) == 0.662178
    assert list(evaluate(run, qrels, "MAP", per_query=True)) == ["q1", "q3"]
    assert round(evaluate(run, qrels, "MAP", average="qrels")["MAP"], 6) == 0.541667  # q2 does not count as 0


@pytest.mark.parametrize("grade", [2**32 - 1, 2**31 - 1, 2**63, -(2**63), 1001, -1001])
def test_relevance_grades_outside_the_documented_range_are_refused(grade):
    run = {"q1": {"d1": 1.0, "d2": 0.5}}
    with pytest.raises(InvalidInputError, match=r"outside the supported range -1000\.\.1000"):
        evaluate(run, {"q1": {"d1": grade, "d2": 1}}, "nDCG@10")
    with pytest.raises(InvalidInputError, match="relevance_level"):
        evaluate(run, {"q1": {"d1": 1}}, "MAP", relevance_level=grade)


def test_grades_at_the_ends_of_the_range_evaluate():
    run = {"q1": {"d1": 1.0, "d2": 0.5}}
    assert evaluate(run, {"q1": {"d1": 1000, "d2": -1000}}, ["nDCG@10", "MAP"]) == {"nDCG@10": 1.0, "MAP": 1.0}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("P_99999999999999999999", "cutoff must be an integer from 1 to"),
        ("nDCG@²", "k is an integer from 1 to"),
        ("nDCG@99999999999999999999", "k is an integer from 1 to"),
        ("P_1.5", "cutoff must be an integer"),
        ("ndcg_cut_٣", "unknown metric"),  # an Arabic-Indic digit
        ("iprec_at_recall_0.123", "at most 2 decimals"),
    ],
)
def test_metric_names_that_trec_eval_cannot_take_are_clear_errors(name, message):
    run, qrels = {"q1": {"d1": 1.0}}, {"q1": {"d1": 1}}
    with pytest.raises(ReasonRankError, match=message):
        evaluate(run, qrels, name)
    with pytest.raises(ReasonRankError, match=message):
        check_metrics(name)


def test_metric_parameters_are_named_as_trec_eval_names_them():
    run = {"q1": {"d1": 3.0, "d2": 2.0, "d3": 1.0}}
    qrels = {"q1": {"d2": 1}}
    got = evaluate(run, qrels, ["P_05", "P@5", "iprec_at_recall_0.1", "iprec_at_recall_0.10", "Rprec_mult_2"])
    assert got["P_05"] == got["P@5"] == 0.2
    assert got["iprec_at_recall_0.1"] == got["iprec_at_recall_0.10"] == 0.5
    assert got["Rprec_mult_2"] == 0.5


def test_an_int_id_and_its_string_are_one_id_and_may_not_both_appear():
    with pytest.raises(InvalidInputError, match="twice"):
        evaluate({1: {"d": 1.0}, "1": {"e": 1.0}}, {"1": {"d": 1}}, "MAP")
    with pytest.raises(InvalidInputError, match="twice"):
        evaluate({"1": {"d": 1.0}}, {"1": {"d": 1, 5: 0, "5": 1}}, "MAP")
