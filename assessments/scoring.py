"""Exam logic with no Flask and no database: which questions an attempt serves and in
what order (from a seed kept on the server), what the browser may see of them, and how
answers are scored. Everything here is deterministic, so an attempt can be re-derived
and checked from its seed and the frozen pool.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lms.ledger_core import canonical_json

__all__ = [
    "PoolError",
    "Score",
    "canonical_json",
    "choice_is_valid",
    "learner_view",
    "normalise_choice",
    "score",
    "serve",
    "sha256_json",
    "topic_counts",
]


def sha256_json(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


class PoolError(ValueError):
    """The frozen pool cannot serve the configured selection (a bug or a bad edit)."""


def topic_counts(pool: Iterable[Mapping[str, Any]]) -> Counter[str]:
    return Counter(q["topic"] for q in pool)


def serve(pool: list[Mapping[str, Any]], *, selection: str, per_topic: Mapping[str, int],
          shuffle_options: bool, seed: str) -> list[dict[str, Any]]:
    """The questions of one attempt, in the order shown, with options in the order shown.

    ``fixed``: every pool question; ``random``: ``per_topic[topic]`` questions drawn from
    each topic. Questions are always shuffled; options too when ``shuffle_options``,
    except for true/false (正确 then 错误 reads naturally). Each served question keeps its
    key (``correct`` per option) and explanation: this snapshot stays on the server.
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible from the secret seed kept on the server
    if selection == "fixed":
        chosen = list(pool)
    elif selection == "random":
        chosen = []
        for topic in sorted(per_topic):
            count = int(per_topic[topic])
            candidates = [q for q in pool if q["topic"] == topic]
            if count > len(candidates):
                raise PoolError(f"topic {topic}: {count} asked, {len(candidates)} in the pool")
            chosen.extend(rng.sample(candidates, count))
    else:
        raise PoolError(f"unknown selection {selection!r}")
    if not chosen:
        raise PoolError("no questions to serve")
    rng.shuffle(chosen)
    served = []
    for position, question in enumerate(chosen, start=1):
        options = list(question["options"])
        if shuffle_options and question["kind"] != "true_false":
            rng.shuffle(options)
        served.append({
            "position": position,
            "question_id": question["id"],
            "kind": question["kind"],
            "topic": question["topic"],
            "text": question["text"],
            "explanation": question.get("explanation", ""),
            "options": [{"option_id": o["id"], "text": o["text"], "correct": bool(o["correct"])}
                        for o in options],
        })
    return served


def learner_view(served: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What the browser may see during an attempt: texts in order, nothing else (no
    question or option ids, no key, no explanation)."""
    return [{"position": q["position"], "kind": q["kind"], "text": q["text"],
             "options": [o["text"] for o in q["options"]]} for q in served]


def normalise_choice(kind: str, indices: Iterable[int], option_count: int) -> list[int]:
    """Sorted distinct option indices; raises ValueError for an index out of range or
    more than one choice for a single-choice or true/false question."""
    chosen = sorted(set(int(i) for i in indices))
    if any(i < 0 or i >= option_count for i in chosen):
        raise ValueError("option out of range")
    if kind != "multiple" and len(chosen) > 1:
        raise ValueError("one option only")
    return chosen


def choice_is_valid(question: Mapping[str, Any], indices: Iterable[int]) -> bool:
    try:
        normalise_choice(question["kind"], indices, len(question["options"]))
    except (TypeError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Score:
    correct: int
    total: int
    percent: int  # floor(100 * correct / total)
    passed: bool


def score(served: list[Mapping[str, Any]], answers: Mapping[int, list[int]],
          pass_score: int) -> Score:
    """Each question counts once; a multiple-choice question is right only when exactly
    the correct options are chosen (多选题少选、错选均不得分). ``passed`` compares exactly
    (100·correct ≥ pass·total), which agrees with the floored percent shown."""
    correct = 0
    for question in served:
        key = [i for i, o in enumerate(question["options"]) if o["correct"]]
        if sorted(answers.get(question["position"], [])) == key:
            correct += 1
    total = len(served)
    percent = (100 * correct) // total if total else 0
    return Score(correct, total, percent, 100 * correct >= pass_score * total and total > 0)
