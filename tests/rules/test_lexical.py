from __future__ import annotations

from pluralism.rules._lexical import LexicalIndex, bigram_tokens, cjk_share, word_tokens


def test_words_drop_stopwords_and_fold_plurals() -> None:
    assert word_tokens("How many Medications can my kids take?") == [
        "many",
        "medication",
        "kid",
        "take",
    ]


def test_bigrams_span_chinese_without_spaces_and_digits() -> None:
    assert bigram_tokens("第十九条，25%") == ["第十", "十九", "九条", "条2", "25"]


def test_cjk_share() -> None:
    assert cjk_share("hello world") == 0.0
    assert cjk_share("北京市规定") == 1.0


def test_chinese_query_finds_chinese_rule_by_characters() -> None:
    index = LexicalIndex(
        ["土地使用者转让土地使用权必须付清地价款", "员工必须向法务部报告", "wash hands"]
    )
    scores = index.normalised("转让土地使用权需要什么条件？")
    assert int(scores.argmax()) == 0
    assert scores[2] == 0


def test_one_shared_common_word_is_not_a_full_match() -> None:
    index = LexicalIndex(["take care when driving at night", "do not give medication doses"])
    scores = index.normalised("how many ibuprofen can my kid take?")
    assert scores.max() < 0.5


def test_empty_corpus_and_empty_query() -> None:
    assert LexicalIndex([]).normalised("anything").shape == (0,)
    assert LexicalIndex(["a rule"]).normalised("?!").tolist() == [0.0]
