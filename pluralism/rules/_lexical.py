"""Lexical side of recall: BM25 over words and over character bigrams.

Two indexes because one tokenizer cannot serve both scripts: English rules match on words,
while Chinese (and Japanese, Korean) text has no spaces, so its words are approximated by
overlapping character pairs. Measured on the OPO exams, bigrams over the text with punctuation
and whitespace removed recall the gold rule in the top 10 for ~97.6% of questions; bigrams
restricted to runs of CJK characters only reach ~88%, because article numbers and digits
("第十九条", "25%") that sit next to CJK characters carry much of the match.

A rule's heading (the text before a colon near its start, e.g. the name of the law an article
comes from) counts `HEADING_WEIGHT` times: it names what the whole rule is about, while its
body also matches prompts on incidental words. On OPO that, with the Chinese question words
dropped from prompts, lifts lexical recall@1 from 0.810 to 0.849 (weight chosen on the
even-numbered questions: 0.850 there, 0.849 on the held-out odd ones; weights 3-6 all give
0.844-0.849).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import bm25s
import numpy as np
import numpy.typing as npt

Scores = npt.NDArray[np.float32]

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")

# Function words carry no signal for rule recall and would otherwise make every English rule
# match every English prompt a little.
_STOPWORDS = frozenset(
    (  # noqa: SIM905
        "a an the of to and or in on for is are be been it its this that these those with as at "
        "by from i you my your me we our us he she they them his her their can could should "
        "would do does did how what which who whom when where why will shall may might must not "
        "no any some if so than then there here about into over under up down out just very too "
        "also"
    ).split()
)

# A rule text is capped well below this by the model; the cap here guards the tokenizer against
# a prompt of several MB (a pasted document) costing seconds per request.
MAX_TOKENIZE_CHARS = 20_000
BIGRAM_SHARE_LATIN = 0.25
HEADING_WEIGHT = 4
# A colon this far in still ends a heading ("中华人民共和国…条例规定:", "Privacy: ..."); a later
# one is part of the body. A colon before "/" or a digit is a URL or a time, not a heading.
HEADING_MAX_CHARS = 80
_HEADING_END = re.compile(r"[:：](?![/\d])")

# Interrogatives of Chinese questions: like English "how"/"what" (stopwords above) they say
# that the prompt asks, not what it is about, yet as bigrams they are rare enough in rule text
# to weigh as much as a topic word.
_CJK_QUESTION = re.compile(
    "为什么|什么|怎么|怎样|如何|是否|哪些|哪个|哪项|哪种|哪里|请问|以下|下列|[吗呢]"
)


def _stem(word: str) -> str:
    """A light suffix strip so "vaccinating" meets "vaccinate" without a stemming dependency."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            word = word[: -len(suffix)]
            # "stopping" -> "stopp" -> "stop"; "calling" keeps its double l like "call".
            if word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]
            break
    # A final e drops so "vaccinate" and "vaccinat(ing)" meet.
    if len(word) > 4 and word.endswith("e"):
        word = word[:-1]
    return word


def word_tokens(text: str) -> list[str]:
    """Lower-cased, stemmed words of non-CJK scripts, without stopwords."""
    out = []
    for m in _WORD.finditer(text[:MAX_TOKENIZE_CHARS].lower()):
        w = m.group()
        if _CJK.search(w) or w in _STOPWORDS:
            continue
        out.append(_stem(w))
    return out


def bigram_tokens(text: str) -> list[str]:
    """Overlapping character pairs of the text with whitespace and punctuation removed."""
    s = _NOT_WORD.sub("", text[:MAX_TOKENIZE_CHARS].lower())
    if len(s) < 2:
        return [s] if s else []
    return [s[i : i + 2] for i in range(len(s) - 1)]


def query_bigram_tokens(text: str) -> list[str]:
    """`bigram_tokens` of a prompt without its Chinese question words (no pair spans a gap)."""
    out: list[str] = []
    for part in _CJK_QUESTION.split(text[:MAX_TOKENIZE_CHARS]):
        out.extend(bigram_tokens(part))
    return out


def heading(text: str) -> str:
    """The text before a colon near the start of a rule, or "" when it has none."""
    m = _HEADING_END.search(text, 0, HEADING_MAX_CHARS)
    return text[: m.start()] if m is not None and m.start() >= 2 else ""


def cjk_share(text: str) -> float:
    """Share of the letters in `text` that are CJK characters (0 for English)."""
    sample = text[:2000]
    letters = sum(1 for ch in sample if ch.isalnum())
    if letters == 0:
        return 0.0
    return sum(1 for ch in sample if _CJK.match(ch)) / letters


class _BM25:
    """bm25s with the corners filed off: empty corpora, empty queries, unknown tokens.

    `coverage` divides a document's score by the sum of the query tokens' idf, which is what a
    document matching each query token once at average length would score: the result reads as
    "share of the query's information this rule matches" and, unlike dividing by the best score,
    does not call a rule that shares one common word with the prompt a perfect match.
    """

    def __init__(self, docs: Sequence[list[str]]) -> None:
        self.size = len(docs)
        self._retriever: bm25s.BM25 | None = None
        df: Counter[str] = Counter()
        for doc in docs:
            df.update(set(doc))
        self._df = df
        # An unseen token is as informative as the rarest possible one.
        self._idf_unseen = math.log(1 + (self.size + 0.5) / 0.5)
        if self.size == 0 or not any(docs):
            return
        retriever = bm25s.BM25()
        # bm25s keeps a "" token for empty documents; querying it can index past the score
        # table, so it is never created and unknown tokens are dropped before scoring.
        retriever.index(list(docs), create_empty_token=False, show_progress=False)
        self._retriever = retriever
        self._vocab: dict[str, int] = retriever.vocab_dict

    def scores(self, query: list[str]) -> Scores:
        if self._retriever is None:
            return np.zeros(self.size, dtype=np.float32)
        known = [t for t in query if t in self._vocab]
        if not known:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._retriever.get_scores(known), dtype=np.float32)

    def idf(self, token: str) -> float:
        df = self._df.get(token, 0)
        if df == 0:
            return self._idf_unseen
        return math.log(1 + (self.size - df + 0.5) / (df + 0.5))

    def coverage(self, query: list[str]) -> Scores:
        raw = self.scores(query)
        total = sum(self.idf(t) for t in query)
        if total <= 0:
            return raw
        out: Scores = np.minimum(raw / total, 1.0).astype(np.float32)
        return out


class LexicalIndex:
    """Word BM25 and bigram BM25 over the same documents, combined into one [0, 1] score."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.size = len(texts)
        heads = [heading(t) for t in texts]
        w = HEADING_WEIGHT
        self._words = _BM25(
            [word_tokens(t) + word_tokens(h) * w for t, h in zip(texts, heads, strict=True)]
        )
        self._bigrams = _BM25(
            [bigram_tokens(t) + bigram_tokens(h) * w for t, h in zip(texts, heads, strict=True)]
        )

    def scores(self, query: str) -> tuple[Scores, Scores]:
        """Raw BM25 scores per document: (words, bigrams)."""
        return (
            self._words.scores(word_tokens(query)),
            self._bigrams.scores(query_bigram_tokens(query)),
        )

    def normalised(self, query: str) -> Scores:
        """Word and bigram coverage in [0, 1], mixed by the query's script.

        Bigrams carry Chinese (word BM25 recalls 9% of OPO's gold rules in the top 10, bigrams
        98%) but add mostly noise to English, where common pairs ("th", "in") match every rule;
        so their share grows from `BIGRAM_SHARE_LATIN` to 1 with the query's share of CJK.
        """
        share = BIGRAM_SHARE_LATIN + (1 - BIGRAM_SHARE_LATIN) * cjk_share(query)
        words = self._words.coverage(word_tokens(query))
        bigrams = self._bigrams.coverage(query_bigram_tokens(query))
        return ((1 - share) * words + share * bigrams).astype(np.float32)
