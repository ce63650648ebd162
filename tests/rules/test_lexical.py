from __future__ import annotations

import pytest

from pluralism.rules import _lexical
from pluralism.rules._lexical import (
    LexicalIndex,
    bigram_tokens,
    cjk_share,
    heading,
    query_bigram_tokens,
    word_tokens,
)


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


def test_inflections_of_one_word_meet() -> None:
    assert word_tokens("vaccinating vaccinate vaccinated") == ["vaccinat"] * 3
    assert word_tokens("stopping stopped stop") == ["stop"] * 3
    assert word_tokens("cities city") == ["city", "city"]
    # Words that merely end like a suffix keep it.
    assert word_tokens("need bus analysis") == ["need", "bus", "analysis"]


def test_chinese_question_words_are_not_matched() -> None:
    tokens = query_bigram_tokens("以下哪项关于土地使用权的说法是正确的？")
    assert not [t for t in tokens if "哪" in t or t == "以下"]
    assert "土地" in tokens
    # No pair is made across the gap a question word leaves.
    assert query_bigram_tokens("土地如何转让") == ["土地", "转让"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("甘肃省测绘成果管理办法规定:<第三条:测绘成果分为>", "甘肃省测绘成果管理办法规定"),
        ("Privacy: never reveal a user's address.", "Privacy"),
        ("See https://example.org before you answer.", ""),
        ("Meet at 10:30 and not later.", ""),
        ("Do not give dosages; refer to a professional." + " x" * 60 + ": late colon", ""),
    ],
)
def test_heading_is_the_text_before_an_early_colon(text: str, expected: str) -> None:
    assert heading(text) == expected


def test_a_rule_whose_heading_names_the_subject_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    rules = [
        "甘肃省测绘成果管理办法规定:<第三条:基础测绘成果由省测绘主管部门统一保管。>",
        "四川成都市测绘管理办法规定:<第十五条:单位进行测绘活动后应当汇交测绘成果。>",
        "北京市道路交通管理办法规定:<第一条:机动车应当靠右行驶。>",
        "上海市环境保护条例规定:<第五条:禁止向河道排放污水。>",
        "广东省消防条例规定:<第八条:单位应当配备灭火器材。>",
    ]
    query = "在甘肃省进行测绘活动，关于测绘成果的处理，下列哪一项是正确的？"
    assert int(LexicalIndex(rules).normalised(query).argmax()) == 0
    # Without the heading's extra weight the body that repeats the question's words wins.
    monkeypatch.setattr(_lexical, "HEADING_WEIGHT", 0)
    assert int(LexicalIndex(rules).normalised(query).argmax()) == 1
