"""Credentials never survive `redact`, and a cut never leaves part of one behind."""

from __future__ import annotations

import logging

import pytest

from pluralism._redact import cut, redact, redact_logs


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        (
            "Redis at redis://default:hunter22@db:6379/0 is down",
            "hunter22",
            "redis://default:***@db",
        ),
        ("rediss://:hunter22@db/0", "hunter22", "rediss://:***@db/0"),
        ("GET http://u:hunter22@up/v1 200", "hunter22", "http://u:***@up/v1"),
        ("GET https://up/v1?api_key=hunter22&x=1", "hunter22", "api_key=***&x=1"),
        ("Authorization: Bearer sk-hunter22", "sk-hunter22", "Bearer ***"),
        ('{"password": "hunter22"}', "hunter22", '"password": "***"'),
        (
            "https://ghp_0123456789abcdefghij@github.com/x",
            "ghp_0123456789abcdefghij",
            "https://***@",
        ),
    ],
)
def test_credentials_are_masked(text: str, secret: str, kept: str) -> None:
    out = redact(text)
    assert secret not in out and kept in out


def test_ordinary_text_is_left_alone() -> None:
    for text in ("max token: 4096", "http://127.0.0.1:8080/v1", "user@example.com wrote"):
        assert redact(text) == text


def test_known_secrets_are_masked_wherever_they_appear() -> None:
    assert redact("the key sk-abc123XYZ was refused", ["sk-abc123XYZ"]) == "the key *** was refused"


def test_a_secret_straddling_the_cut_is_masked_first() -> None:
    key = "sk-0123456789abcdef"
    out = cut("x" * 190 + key + " refused", 200, [key])
    assert len(out) <= 200 and key[:4] not in out


def test_log_records_are_redacted_whoever_logs_them(caplog: pytest.LogCaptureFixture) -> None:
    redact_logs()
    redact_logs()  # idempotent: one layer, not two
    caplog.set_level("INFO")
    logging.getLogger("httpx").info('HTTP Request: POST %s "200 OK"', "http://u:hunter22@h/v1")
    try:
        raise RuntimeError("cannot reach redis://:hunter22@db/0")
    except RuntimeError:
        logging.getLogger("x").exception("failed")
    assert "hunter22" not in caplog.text
    assert "http://u:***@h/v1" in caplog.text
