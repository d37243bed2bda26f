"""Answer extraction for reasoning benchmarks: which part of a completion is its final answer.

Only the text after the model's last closed thought is searched (:func:`answer_region`). The strict
rules come first and are the ones older records were extracted with: the last ``\\boxed{}``, a
"the answer is X" phrase, ``#### X`` (math) or a boxed / "answer is (B)" letter (choice). When they
find nothing and the output was not truncated, fallbacks read (in the region's last
:data:`FALLBACK_CHARS` characters) the forms models write without a box:
"Final answer: 42", "Answer $9$", "A: 18", math-verify's own answer patterns on the final
statement, and choice letters written bare, bold, quoted or as "the correct option is B". Fallbacks
never read text that does not look like prose (random bytes), and nothing is read from an unclosed
thought. math_verify is imported only by the final-statement fallback.

``extract_how`` values: ``boxed``, ``answer_is``, ``hashes`` (strict rules); ``boxed_joined`` (the
final statement's boxes joined for a gold with several answers); ``answer_after_box`` (a "Final
answer:" line after the last box overrides that intermediate box); ``answer_phrase``,
``final_statement``, ``choice_phrase``, ``choice_final`` (fallbacks); ``no_answer``,
``truncated`` (truncated output, nothing found) and ``unclosed_thought``.
"""

from __future__ import annotations

import re
import unicodedata
from itertools import groupby

FALLBACK_CHARS = 2000  # the fallbacks read the final part of the answer region only
_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_PHRASE_RE = re.compile(r"(?:final answer|the answer) is\b[\s:]*(.*?)(?:\.(?:\s|$)|\n|$)", re.I)
_HASHES_RE = re.compile(r"####\s*([^\n]*)")
_CHOICE_PHRASE_RE = re.compile(r"(?i:answer)(?:\s+is)?[\s:*]*\(?\s*([A-D])\b(?![-'’])")
_TEXT_WRAP_RE = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}")
_DELIMS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("**", "**"))

# "Final answer: 42", "**Answer:** $9$", "Answer $9$" (no separator: the value must start like math)
_ANSWER_LINE_RE = re.compile(  # a lookahead, so that overlapping phrases on one line are all seen
    r"(?=(?i:\b(?:final\s+answer|answer))\b[ \t]*(?:\*\*|__)?[ \t]*"
    r"(?:(?:[:：]|(?i:is)\b)[ \t]*(?:\*\*|__)?\s*(?P<v>[^\n]*)|(?P<m>[$\\\d(−-][^\n]*)))")
_A_LINE_RE = re.compile(r"(?m)^[ \t>#*]*A(?:\*\*)?[ \t]*[:：][ \t]*(?:\*\*)?(?P<v>[^\n]+)")
_STRONG_ANCHOR_RE = re.compile(r"(?i:\bfinal\s+answer\b|\banswer\s*(?:\*\*)?\s*[:：])")
_MATH_SPAN_RE = re.compile(r"\$\$(.+?)\$\$|(?<![\\$])\$(.+?)(?<!\\)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.S)
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)|;|(?<=\s)(?i:I hope|which|because|since)\b")
_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")
_NUMBER_RE = re.compile(r"(?<![\w.])[-−]?\d[\d,]*(?:\.\d+)?(?![\w])")
_MATHY_RE = re.compile(r"[\d\\=+*/^]|^\s*[A-Za-z]\s*$")

_ODD_CHARS_RE = re.compile(r"[~@`\x7f]")
_VOWELS = frozenset("aeiouyAEIOUY")
_NO_VOWEL_WORDS = frozenset(("sqrt", "mph", "nth", "hmm"))
_CLEAN_TOKEN_RE = re.compile(r"[(\[{\"'“‘*$]*(?:[^\W\d_]+(?:['’-][^\W\d_]+)*|[-−+]?\d+(?:[.,]\d+)*%?)"
                             r"[)\]}\"'”’*.,;:!?$]*")
_LATEX_CMD_RE = re.compile(r"\\[A-Za-z]{2,}")
_EXPR_TOKEN_RE = re.compile(r"[-+*/=^<>]|\d*[a-z]?[-+*/^=().\da-z]*")
_FUNCTION_WORDS = frozenset(
    "the a an is are was were be of to in on and or so we it its this that for with as by at from then there which "
    "has have had not if each per than can get gives thus therefore hence since because let find total answer "
    "equals our all she he they her his their you one".split())
_VERDICT_WORDS = frozenset("correct incorrect wrong right unclear unknown not above below shown given clear obvious "
                           "the that this as in yes no none see same".split())
_LETTER = r"[\"'“‘(*\s]*(?i:option\s+|choice\s+)?[\"'“‘(*]*([A-D])\b(?![-'’\w])"
_CHOICE_FALLBACK_RES = (
    re.compile(r"(?i:\b(?:answer|option|choice|letter)\s+(?:is|must\s+be|should\s+be|would\s+be|will\s+be))"
               r"[\s:*]*" + _LETTER),
    re.compile(r"(?i:\b(?:correct|right|best|final)\s+(?:option|choice|letter|answer))[\s:*]*" + _LETTER),
    re.compile(r"(?i:\b(?:choose|chose|pick|select|go\s+with|answer\s+with))\s+(?i:option\s+|choice\s+)?"
               + _LETTER),
    re.compile(r"(?i:\b(?:option|choice))\s*\(?([A-D])\)?\s+(?i:is\s+(?:correct|right|the\s+(?:correct|right|best)))"),
    re.compile(r"(?i:\b(?:it|this|that)\s+(?:is|must\s+be|should\s+be|has\s+to\s+be|would\s+be))\s+"
               r"(?i:option\s+|choice\s+)?[\"'“‘(*]*([A-D])[\"'”’)*]*(?=[.!]?\s*$)", re.M),
    re.compile(r"(?:\(([A-D])\)|\b([A-D])\)|(?:^|(?<=[.:!]\s))([A-D]))\s+"
               r"(?i:is\s+(?:the\s+)?(?:correct|right|only|best)\b)", re.M),
    re.compile(r"(?i:\b(?:so|thus|hence|therefore|left\s+with|leaves|leaving))[\s,:]*(?i:option\s+|choice\s+)?"
               r"[\"'“‘(*]*([A-D])[\"'”’)*]*[.!]?\s*\Z"),
)
_LAST_LINE_LETTER_RES = (
    re.compile(r"^[\"'“‘(\s*]*([A-D])[\"'”’)\s*]*[.:!]?$"),            # "B", "(B)", "'B'", "B."
    re.compile(r"^\(?([A-D])[.:)]\s+\S"),                            # "B. 42 nm", "(B) 42 nm"
)
_INLINE_LETTER_RE = re.compile(r"\*\*\(?([A-D])\)?\*\*|[\"“‘']\(?([A-D])\)?[\"”’']|\(([A-D])\)(?!\s*\w)")


def answer_region(text: str, think_open="<think>", think_close="</think>", opened=False) -> str | None:
    """Return the stripped part of a completion after its last closed thought, or None.

    ``opened=True`` means the prompt already ended with ``think_open``, so the completion starts
    inside a thought. A thought that is opened and never closed (a truncated thought) gives None,
    never the reasoning text. Text without tags (and ``opened=False``) is returned whole; empty tags
    mean the arm does not think.
    """
    if not think_open or not think_close:
        return text.strip()
    cut = text.rfind(think_close)
    if cut < 0:
        return None if opened or think_open in text else text.strip()
    tail = text[cut + len(think_close):]
    return None if think_open in tail else tail.strip()


def _closing_braces(text: str) -> dict[int, int]:
    """Position of each ``{`` -> position of its matching ``}`` (escaped braces skipped), one pass."""
    match, stack, i = {}, [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            match[stack.pop()] = i
        i += 1
    return match


def _box_at(text: str, i: int, closing: dict[int, int]) -> tuple[str | None, int]:
    """The content of the box whose ``\\boxed`` ends at ``i`` and where it ends (None: unclosed)."""
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text) or text[i] != "{":
        token = re.match(r"[^\s$]*", text[i:]).group(0)
        return token.rstrip(".,;") or None, i + len(token)
    end = closing.get(i)
    return (None, len(text)) if end is None else (text[i + 1:end], end + 1)


def boxes(text: str) -> list[tuple[int, int, str | None]]:
    """Every ``\\boxed``/``\\fbox`` in ``text``: ``(start, end, content or None when unclosed)``.
    Nested and escaped braces are handled; ``\\boxed 5`` gives ``5``."""
    found = list(_BOX_RE.finditer(text))
    closing = _closing_braces(text) if found else {}
    out = []
    for m in found:
        content, end = _box_at(text, m.end(), closing)
        out.append((m.start(), end, content))
    return out


def last_boxed(text: str) -> str | None:
    """Return the content of the last ``\\boxed{...}`` / ``\\fbox{...}`` in ``text``, or None.

    Nested and escaped braces are handled (``\\boxed{\\frac{1}{\\sqrt{2}}}``); ``\\boxed 5`` gives
    ``5``. A last box whose braces never balance (a truncated answer) gives None.
    """
    found = boxes(text)
    return found[-1][2] if found else None


def split_answers(s: str) -> list[str]:
    """``s`` split at its top-level commas and semicolons: the answers of a gold such as
    OlympiadBench's ``3, -2`` or ``(1,6),(2,3)``. Commas inside brackets, braces or a number
    (``1,234``, ``1{,}000``, ``1,\\!000``) do not split; a gold with one answer gives ``[s]``."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(s):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif ch in ",;" and depth == 0:
            thousands = ch == "," and i and s[i - 1].isdigit() and re.match(r"(?:\\!)?\d{3}(?![\d.])", s[i + 1:])
            if not thousands:
                parts.append(s[start:i])
                start = i + 1
    parts.append(s[start:])
    parts = [p.strip() for p in parts if p.strip()]
    return parts or [s]


def strip_delims(s: str) -> str:
    """Strip whitespace, a trailing period and one pair of math or bold delimiters."""
    s = s.strip().rstrip(".").strip()
    for left, right in _DELIMS:
        if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
            return s[len(left):len(s) - len(right)].strip()
    return s


def _reduce_words(s: str) -> str:
    """``18 dollars`` / ``she has 18 apples left`` -> ``18``: a value whose prose words surround
    exactly one number is that number (math-verify reads ``18 dollars`` as a product of symbols).
    Words inside ``\\text{}`` and the connectives "and"/"or" are not prose."""
    bare = _TEXT_WRAP_RE.sub(" ", s)
    words = [w for w in _WORD_RE.findall(bare) if w.lower() not in ("and", "or")]
    numbers = _NUMBER_RE.findall(bare)
    return numbers[0] if words and len(numbers) == 1 and "=" not in bare else s


def _clean_value(v: str) -> str | None:
    """The answer in a phrase's value: the value up to the end of its sentence, then its math spans
    (joined by ", " when several) or the whole of it; delimiters stripped, prose around one number
    dropped."""
    v = _SENTENCE_END_RE.split(v.strip().strip("*_").strip(), 1)[0]
    spans = [next(g for g in m.groups() if g is not None).strip() for m in _MATH_SPAN_RE.finditer(v)]
    spans = [last_boxed(x) or x for x in spans if x.strip()]
    if spans:
        return ", ".join(strip_delims(x) for x in spans) or None
    v = strip_delims(v.strip().strip("*_\"'“”").rstrip(".,:;!").strip())
    return _reduce_words(v) or None


def answer_count(s: str) -> int:
    """How many answers ``s`` states: its top-level parts (:func:`split_answers`), "and"/"or" and
    ``\\quad`` counting as separators."""
    return len(split_answers(re.sub(r"\\text\s*\{\s*(?:and|or)\s*\}|\b(?:and|or)\b|\\q?quad", ",", s)))


def _nice_run(run: str) -> bool:
    """A run of letters as words are spelled: one case (or a capital first), a vowel when 3+ long."""
    if not (run.islower() or run.isupper() or (run[0].isupper() and run[1:].islower())):
        return False
    return len(run) < 3 or run.isupper() or bool(_VOWELS & set(run)) or run.lower() in _NO_VOWEL_WORDS


def _looks_like_text(s: str) -> bool:
    """False for text that is not prose or math: control or replacement characters (random bytes);
    letter runs that are not spelled like words, many tokens with characters prose rarely holds, or
    few word/number/math tokens (random printable noise: about 98 % of it is caught); many words and
    almost no function words (the token soup of an untrained model)."""
    if not s.strip():
        return False
    bad = sum(1 for ch in s if ch == "\ufffd" or (unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn")
                                                    and ch not in "\n\t\r"))
    if bad > 0.01 * len(s):
        return False
    tokens = s.split()
    runs = [r for r in re.findall(r"[A-Za-z]+", s) if len(r) >= 2]
    if len(runs) >= 2 and sum(map(_nice_run, runs)) < 0.6 * len(runs):
        return False
    if sum(1 for t in tokens if _ODD_CHARS_RE.search(t) or ("#" in t and not re.fullmatch(r"#+", t))) \
            >= 0.25 * len(tokens):
        return False
    if len(tokens) >= 4 and sum(1 for t in tokens if _CLEAN_TOKEN_RE.fullmatch(t) or _LATEX_CMD_RE.search(t)
                                or _EXPR_TOKEN_RE.fullmatch(t)) < 0.4 * len(tokens):
        return False
    words = [w.lower() for w in (t.strip(".,;:!?()*\"'") for t in tokens) if re.fullmatch(r"[^\W\d_]{2,}", w)]
    return not (len(words) >= 8 and sum(w in _FUNCTION_WORDS for w in words) < 0.08 * len(words))


def _cut_by_truncation(region: str, end: int, truncated: bool) -> bool:
    """A truncated output's answer that runs to the very end of the text may be cut short."""
    return truncated and not region[end:].strip()


def _plausible(v: str) -> bool:
    """Whether a phrase's value can be an answer: math, or a few words not opening with a verdict
    ("the answer is correct", "Final answer: unknown" are not answers)."""
    if _MATHY_RE.search(v):
        return True
    words = v.split()
    return 0 < len(words) <= 3 and words[0].lower().strip(".,;:!?*_") not in _VERDICT_WORDS


def _last_phrase(region: str, truncated: bool):
    """The last strict "the answer is X" / ``#### X`` answer: ``(value, how)`` or None."""
    for regex, how in ((_PHRASE_RE, "answer_is"), (_HASHES_RE, "hashes")):
        for m in reversed(list(regex.finditer(region))):
            if _cut_by_truncation(region, m.end(), truncated):
                continue
            value = _clean_value(m.group(1)) if how == "answer_is" else strip_delims(m.group(1))
            if value and (how == "hashes" or _plausible(value)):
                return value, how
    return None


def _answer_line(text: str) -> str | None:
    """The value of the last "Final answer: X" / "Answer: X" / "Answer $X$" / "A: X" in ``text``."""
    found = [(m.start(), m.group("v") if m.group("v") is not None else m.group("m"))
             for regex in (_ANSWER_LINE_RE, _A_LINE_RE) for m in regex.finditer(text)]
    for _, raw in sorted(found, reverse=True):
        value = _clean_value(raw) if raw else None
        if value and len(value) <= 200 and _plausible(value):
            return value
    return None


def _final_statement(region: str) -> str | None:
    """math-verify's answer patterns on the last lines of ``region`` (latex spans, numbers,
    expressions, answer-anchored forms), without sympy parsing: the best-priority, rightmost match's
    text. Lines are tried from the last one up (three at most)."""
    from math_verify.parser import ExprExtractionConfig, LatexExtractionConfig, get_extraction_regexes

    regexes = get_extraction_regexes((LatexExtractionConfig(boxed_match_priority=-1), ExprExtractionConfig()))
    patterns = sorted(((prio, p) for pats, _ in regexes for p, prio in pats), key=lambda x: x[0])
    lines = [ln for ln in region.splitlines() if ln.strip()][-3:]
    for line in reversed(lines):
        line = line[-400:]
        for _, group in groupby(patterns, key=lambda x: x[0]):
            matches = [m for _, p in group for m in p.finditer(line)]
            if matches:
                text = _match_text(max(matches, key=lambda m: (m.end(), -m.start())))
                if text:
                    return text
    return None


def _match_text(m: re.Match) -> str | None:
    """The answer text of a math-verify pattern match (its latex groups, or its number/expression)."""
    groups = m.groupdict()
    latex = [v.strip() for k, v in groups.items() if "_latex" in k and v and v.strip()]
    if latex:
        pct = any(v for k, v in groups.items() if k.endswith("_percent"))
        return ", ".join(latex) + ("\\%" if pct else "")
    if groups.get("expr"):
        return groups["expr"].strip()
    number = "".join(v for k, v in groups.items() if v and k.startswith(("integer", "decimal")))
    return (number + ("\\%" if groups.get("percent") else "")) if number else None


def _math(region: str, truncated: bool, n_gold: int) -> tuple[str | None, str]:
    found = boxes(region)
    closed = [b for b in found if b[2] is not None and b[2].strip()]
    if found and found[-1][2] is not None and found[-1][2].strip():
        last_start, last_end, content = found[-1]
        tail = region[last_end:]
        anchor = list(_STRONG_ANCHOR_RE.finditer(tail))
        if anchor and (value := _answer_line(tail[anchor[-1].start():])) and _MATHY_RE.search(value):
            return value, "answer_after_box"
        if n_gold > 1 and answer_count(content) < n_gold:
            anchors = list(_STRONG_ANCHOR_RE.finditer(region, 0, last_start))
            since = anchors[-1].end() if anchors else 0
            picked: list[str] = []
            for _, _, c in reversed([b for b in closed if b[0] >= since]):
                if c.strip() not in picked:
                    picked.insert(0, c.strip())
                if sum(answer_count(x) for x in picked) >= n_gold:
                    break
            if len(picked) > 1:
                return ", ".join(picked), "boxed_joined"
        return content.strip(), "boxed"
    if (phrase := _last_phrase(region, truncated)) is not None:
        return phrase
    if truncated:
        return None, "truncated"
    region = region[-FALLBACK_CHARS:]
    if not _looks_like_text(region):
        return None, "no_answer"
    if (value := _answer_line(region)) is not None:
        return value, "answer_phrase"
    if (value := _final_statement(region)) is not None:
        value = strip_delims(value)
        if "=" in value and "," not in value:  # "48 + 24 = 72", "a = 7": the value after the last "="
            value = value.rsplit("=", 1)[1].strip() or value
        return value or None, "final_statement"
    return None, "no_answer"


def _choice_letter(s: str) -> str | None:
    """The letter A-D that ``s`` (a box content) names: ``B``, ``(B)``, ``\\text{B}``, ``B. 42``."""
    s = strip_delims(_TEXT_WRAP_RE.sub(r"\1", s))
    m = re.match(r"\(?\s*([A-D])\s*\)?(?![A-Za-z0-9])", s)
    return m.group(1) if m else None


def _choice(region: str, truncated: bool) -> tuple[str | None, str]:
    boxed = last_boxed(region)
    letter = _choice_letter(boxed) if boxed is not None else None
    if letter:
        return letter, "boxed"
    found = [m for m in _CHOICE_PHRASE_RE.finditer(region) if not _cut_by_truncation(region, m.end(), truncated)]
    if found:
        return found[-1].group(1), "answer_is"
    if truncated:
        return None, "truncated"
    region = region[-FALLBACK_CHARS:]
    if not _looks_like_text(region):
        return None, "no_answer"
    last = re.sub(r"^[\s>#*_-]+|[\s*_]+$", "", region.splitlines()[-1])
    for regex in _LAST_LINE_LETTER_RES:  # a letter standing alone at the end wins
        if m := regex.match(last):
            return m.group(1), "choice_final"
    hits = [m for regex in _CHOICE_FALLBACK_RES for m in regex.finditer(region)]
    if hits:
        return next(g for g in max(hits, key=lambda m: m.end()).groups() if g), "choice_phrase"
    inline = list(_INLINE_LETTER_RE.finditer(last))
    if inline:
        return next(g for g in inline[-1].groups() if g), "choice_final"
    return None, "no_answer"


def extract_answer(completion: str, grader: str, *, think_open="<think>", think_close="</think>",
                   opened=False, truncated=False, gold: str | None = None) -> tuple[str | None, str]:
    """Extract the answer from a completion; return ``(answer or None, how)`` (see the module doc).

    Only :func:`answer_region` is searched. Grader ``"math"``: the last ``\\boxed{}`` (unless a
    "Final answer:" line follows it; when ``gold`` has several answers, the final statement's boxes
    joined by ", "); else the last "final answer is X" / "the answer is X" phrase (X up to the end of
    its sentence or line, math delimiters stripped); else the last ``#### X``; else, when not
    ``truncated``, the fallbacks. Grader ``"choice"``: a letter A-D from the last box
    (``\\boxed{B}``, ``\\boxed{(B)}``, ``\\boxed{\\text{B}}``); else the last "answer is (B)" /
    "Answer: B" (upper-case letter only); else, when not ``truncated``, the letter forms models
    write. ``truncated`` (finish reason "length"): an answer phrase running to the very end of the
    text is not read, and no fallback applies.
    """
    if grader not in ("math", "choice"):
        raise ValueError(f"unknown grader {grader!r} (expected 'math' or 'choice')")
    region = answer_region(completion, think_open, think_close, opened)
    if region is None:
        return None, "unclosed_thought"
    if grader == "choice":
        return _choice(region, truncated)
    return _math(region, truncated, len(split_answers(gold)) if gold else 1)
