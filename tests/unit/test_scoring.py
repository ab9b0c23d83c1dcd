"""The pure exam rules: what an attempt serves, what the browser sees, how it scores."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from assessments.scoring import (
    PoolError,
    learner_view,
    normalise_choice,
    score,
    serve,
    sha256_json,
)


def _question(qid: int, topic: str = "performance", kind: str = "single") -> dict:
    if kind == "true_false":
        options = [{"id": qid * 10 + 1, "text": "正确", "correct": True},
                   {"id": qid * 10 + 2, "text": "错误", "correct": False}]
    else:
        correct = {1} if kind == "single" else {1, 3}
        options = [{"id": qid * 10 + p, "text": f"题{qid}选项{p}", "correct": p in correct}
                   for p in range(1, 5)]
    return {"id": qid, "kind": kind, "topic": topic, "text": f"题{qid}",
            "explanation": f"解析{qid}", "options": options}


POOL = ([_question(i) for i in range(1, 9)]
        + [_question(i, "attendance") for i in range(9, 13)]
        + [_question(13, kind="multiple"), _question(14, kind="true_false")])


def _serve(seed: str, **kw) -> list[dict]:
    args = {"selection": "random", "per_topic": {"performance": 5, "attendance": 2},
            "shuffle_options": True, "seed": seed, **kw}
    return serve(POOL, **args)


def test_the_same_seed_serves_the_same_attempt_and_another_seed_another_order():
    assert _serve("seed-a") == _serve("seed-a")
    orders = {tuple(q["question_id"] for q in _serve(f"seed-{n}")) for n in range(20)}
    assert len(orders) > 15  # 7 of 14 questions, shuffled: repeats would mean no shuffling


def test_random_selection_draws_the_asked_count_per_topic():
    served = _serve("s")
    topics = [q["topic"] for q in served]
    assert topics.count("performance") == 5 and topics.count("attendance") == 2
    assert [q["position"] for q in served] == list(range(1, 8))
    assert len({q["question_id"] for q in served}) == 7


def test_fixed_selection_serves_every_pool_question_shuffled():
    pool = POOL[:6]
    served = serve(pool, selection="fixed", per_topic={}, shuffle_options=False, seed="x")
    assert sorted(q["question_id"] for q in served) == [q["id"] for q in pool]
    orders = {tuple(q["question_id"] for q in serve(pool, selection="fixed", per_topic={},
                                                    shuffle_options=False, seed=str(n)))
              for n in range(10)}
    assert len(orders) > 1


def test_options_are_shuffled_except_true_false_and_keep_their_key():
    runs = [serve(POOL, selection="fixed", per_topic={}, shuffle_options=True, seed=str(n))
            for n in range(10)]
    first_option_of_q1 = {next(q for q in run if q["question_id"] == 1)["options"][0]["option_id"]
                          for run in runs}
    assert len(first_option_of_q1) > 1
    for run in runs:
        tf = next(q for q in run if q["kind"] == "true_false")
        assert [o["text"] for o in tf["options"]] == ["正确", "错误"]
        q1 = next(q for q in run if q["question_id"] == 1)
        assert [o["option_id"] for o in q1["options"] if o["correct"]] == [11]


def test_without_option_shuffling_options_keep_the_bank_order():
    served = serve(POOL, selection="fixed", per_topic={}, shuffle_options=False, seed="s")
    q13 = next(q for q in served if q["question_id"] == 13)
    assert [o["option_id"] for o in q13["options"]] == [131, 132, 133, 134]


def test_a_pool_too_small_for_the_selection_is_refused():
    with pytest.raises(PoolError):
        serve(POOL, selection="random", per_topic={"attendance": 5}, shuffle_options=True,
              seed="s")
    with pytest.raises(PoolError):
        serve([], selection="fixed", per_topic={}, shuffle_options=True, seed="s")


def test_the_learner_view_carries_no_key_ids_or_explanations():
    view = learner_view(_serve("s"))
    text = json.dumps(view, ensure_ascii=False)
    assert "correct" not in text and "解析" not in text and "_id" not in text
    assert set(view[0]) == {"position", "kind", "text", "options"}
    assert all(isinstance(o, str) for q in view for o in q["options"])


def test_choices_are_normalised_and_impossible_ones_refused():
    assert normalise_choice("multiple", [3, 1, 3], 4) == [1, 3]
    assert normalise_choice("single", [], 4) == []
    for kind, indices in (("single", [0, 1]), ("true_false", [0, 1]), ("single", [4]),
                          ("multiple", [-1])):
        with pytest.raises(ValueError):
            normalise_choice(kind, indices, 4)


def test_multiple_choice_scores_only_the_exact_set():
    served = serve([_question(13, kind="multiple")], selection="fixed", per_topic={},
                   shuffle_options=False, seed="s")
    assert score(served, {1: [0, 2]}, 100).correct == 1
    assert score(served, {1: [0]}, 100).correct == 0  # 少选不得分
    assert score(served, {1: [0, 1, 2]}, 100).correct == 0  # 错选不得分


def test_unanswered_questions_are_wrong_and_the_pass_mark_is_exact():
    served = _serve("s")
    key = {q["position"]: [i for i, o in enumerate(q["options"]) if o["correct"]]
           for q in served}
    assert score(served, key, 100) == score(served, dict(key), 100)
    assert score(served, key, 100).passed and score(served, key, 100).percent == 100
    six = dict(list(key.items())[:6])  # 6 of 7 = 85.7 %
    result = score(served, six, 86)
    assert (result.correct, result.percent, result.passed) == (6, 85, False)
    assert score(served, six, 85).passed


@given(st.integers(1, 40), st.integers(0, 40), st.integers(1, 100))
def test_passed_agrees_with_the_percent_shown(total, correct, pass_score):
    correct = min(correct, total)
    served = [{"position": n, "options": [{"correct": True}, {"correct": False}]}
              for n in range(1, total + 1)]
    answers = {n: [0] for n in range(1, correct + 1)}
    result = score(served, answers, pass_score)
    assert result.passed == (result.percent >= pass_score)


def test_hashes_are_over_canonical_json():
    assert sha256_json({"b": 1, "a": "中"}) == sha256_json({"a": "中", "b": 1})
