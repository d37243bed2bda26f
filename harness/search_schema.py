"""Record schemas of the ``search_r1`` eval's ``samples.jsonl`` (listed in
:data:`harness.protocols.SCHEMAS`, which renders them into ``docs/writing-plugins.md``)."""

from __future__ import annotations

from typing import TypedDict


class SearchTurn(TypedDict):
    """One turn of a ``search`` record: what the model generated and what the harness inserted.
    The rollout's context is the prompt followed, per turn, by ``lead_ids + token_ids + close_ids +
    inserted_ids``."""

    turn: int
    search_enabled: bool  # False: the final turn after max_turns (no retrieval)
    seed: int
    lead: str  # inserted before generating (the final turn's instruction to answer), else ""
    lead_ids: list[int]
    text: str  # the model's text, decoded from token_ids
    token_ids: list[int]  # the model's ids as generated (a stop string's token is cut, EOS not included)
    finish_reason: str  # "stop", "eos" or "length"
    close: str  # the close tag inserted after a stop-string cut ("" when none)
    close_ids: list[int]
    action: str  # "search", "answer" or "invalid"
    query: str | None
    answer: str | None
    retrieved_ids: list[str] | None  # the retriever's passage ids (None: no search made)
    docs: list[dict] | None  # the passages shown after the evidence condition: id, contents
    inserted: str  # the observation or correction appended after the turn, decoded from inserted_ids
    inserted_ids: list[int]
    inserted_kind: str | None  # "observation", "correction" or None
    obs_truncated: bool


class SearchRecord(TypedDict, total=False):
    """A line of ``samples.jsonl`` written by the ``search_r1`` eval (``condition``: the evidence
    condition). A skipped record (the condition does not apply to the item) holds the fields up to
    ``golden_answers``, ``skipped`` and ``skip_reason``."""

    eval: str
    arm: str
    condition: str
    item_id: str
    sample: int
    cluster: str | None
    dataset: str
    hops: int | None
    question: str
    golden_answers: list[str]
    skipped: bool
    skip_reason: str
    seed: int
    template_sha: str
    chat: bool
    prompt_tokens: int
    turns: list[SearchTurn]
    n_turns: int
    n_searches: int  # searches made (retriever called)
    n_invalid: int  # turns with an invalid action
    completion_tokens: int  # ids the model generated, all turns
    inserted_tokens: int  # ids the harness inserted (close tags, observations, corrections, instruction)
    finish_reason: str | None  # of the last turn
    prediction: str | None  # the last <answer> the model wrote (None: no answer)
    em: bool
    sub_em: bool  # a golden answer is a substring of the prediction (normalised)
    f1: float  # token F1, the best over golden answers
    no_answer: bool
    answer_in_retrieved: bool | None  # a shown passage holds a golden answer (None: no search made)
