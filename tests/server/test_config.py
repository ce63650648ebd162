"""`pluralism.yaml`, environment overrides, flags, and the `pluralism serve` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pluralism.errors import ConfigError
from pluralism.server import ProxyConfig, load_config
from pluralism.server._state import key_hashes

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pluralism.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = write(tmp_path, "port: 9000\nhost: 0.0.0.0\ndefault_mode: rules\npolicies: pol\n")
    env = {"PLURALISM_PORT": "9100", "PLURALISM_API_KEYS": "a, b,", "PLURALISM_OTHER": "x"}
    cfg = load_config(path, env=env, overrides={"port": 9200, "host": None})
    assert cfg.port == 9200  # the flag wins
    assert cfg.host == "0.0.0.0"  # a flag not given leaves the file's value
    assert cfg.default_mode == "rules"
    assert [k.get_secret_value() for k in cfg.api_keys] == ["a", "b"]
    assert cfg.policies == tmp_path / "pol"  # relative to the file
    assert load_config(path, env=env).port == 9100


def test_rules_embedder_is_one_model_or_several_relative_to_the_file(tmp_path: Path) -> None:
    one = load_config(write(tmp_path, "rules_embedder: tuned\n"), env={})
    assert one.rules_embedder == [tmp_path / "tuned"]
    both = load_config(write(tmp_path, "rules_embedder: [a, /abs/b]\n"), env={})
    assert both.rules_embedder == [tmp_path / "a", Path("/abs/b")]
    from_env = load_config(None, env={"PLURALISM_RULES_EMBEDDER": "/m/a, /m/b"})
    assert from_env.rules_embedder == [Path("/m/a"), Path("/m/b")]
    assert load_config(None, env={}).rules_embedder == []


def test_no_file_gives_the_defaults() -> None:
    cfg = load_config(None, env={})
    assert cfg == ProxyConfig()
    assert (cfg.host, cfg.port, cfg.default_mode, cfg.upstream) == (
        "127.0.0.1",
        8080,
        "overton",
        None,
    )


def test_upstream_key_from_the_environment_is_secret() -> None:
    cfg = load_config(None, env={"PLURALISM_UPSTREAM_API_KEY": "sk-secret"})
    assert cfg.upstream_api_key is not None
    assert cfg.upstream_api_key.get_secret_value() == "sk-secret"
    assert "sk-secret" not in repr(cfg) and "sk-secret" not in cfg.model_dump_json()


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("port: 80\nprot: 90\n", 2, "`prot` is not a known field"),
        ("host: x\nport: eighty\n", 2, "`port`"),
        ("default_mode: utopia\n", 1, "`default_mode`"),
        ("upstream: 127.0.0.1:8000\n", 1, "http://"),
        ("port: 80\nworkers: 0\n", 2, "`workers`"),
        ("settings:\n  top_k: 0\n", 2, "`settings.top_k`"),
        ("port: [1\n", None, "YAML syntax error"),
    ],
)
def test_errors_name_the_file_line_and_field(
    tmp_path: Path, text: str, line: int | None, words: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    message = str(err.value)
    assert message.startswith(str(path) + (f":{line}:" if line else ""))
    assert words in message


def test_a_bad_environment_variable_is_named() -> None:
    with pytest.raises(ConfigError, match="PLURALISM_PORT"):
        load_config(None, env={"PLURALISM_PORT": "lots"})


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", env={})


def test_hashed_keys_must_be_64_hex_digits() -> None:
    assert len(key_hashes(["sha256:" + "ab" * 32])[0]) == 32
    with pytest.raises(ConfigError, match="64 hex digits"):
        key_hashes(["sha256:abc"])


def test_the_shipped_example_is_valid_and_documents_every_field() -> None:
    example = ROOT / "examples" / "pluralism.example.yaml"
    cfg = load_config(example, env={})
    assert cfg.upstream_model == "my-chatbot"
    text = example.read_text()
    docs = (ROOT / "docs" / "proxy.md").read_text()
    for field in ProxyConfig.model_fields:
        assert field in text, f"examples/pluralism.example.yaml does not mention {field}"
        assert f"`{field}`" in docs, f"docs/proxy.md does not document {field}"


def test_the_cli_module_is_light_to_import() -> None:
    code = (
        "import sys, pluralism.server._cli; "
        "print(sorted(m for m in ('fastapi', 'uvicorn', 'torch', 'langgraph') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def serve(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pluralism", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_serve_with_a_broken_config_exits_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "port: 80\nprot: 90\n")
    out = serve(path)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert f"{path}:2" in " ".join(out.stderr.split())


def test_serve_help_lists_the_flags() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pluralism", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "200", "TERM": "dumb", "PATH": ""},
    )
    assert out.returncode == 0, out.stderr
    for flag in (
        "--upstream",
        "--upstream-model",
        "--config",
        "--policies",
        "--communities",
        "--values",
        "--rules-embedder",
        "--host",
        "--port",
    ):
        assert flag in out.stdout


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("values: nowhere\n", "values directory does not exist"),
        ("values: broken\n", "broken"),
        ("rules_embedder: nowhere\n", "/nowhere is not a directory"),
    ],
)
def test_serve_refuses_a_missing_or_broken_values_catalogue_or_embedder(
    tmp_path: Path, body: str, needle: str
) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "values.yaml").write_text("rules:\n  - id: honesty\n", "utf-8")
    out = serve(write(tmp_path, body))
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert needle in " ".join(out.stderr.split())


def test_a_worker_started_without_serve_says_how_to_start_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pluralism.server._app import worker_app

    monkeypatch.delenv("PLURALISM_WORKER_CONFIG", raising=False)
    with pytest.raises(RuntimeError, match="start workers with `pluralism serve`"):
        worker_app()


@pytest.mark.parametrize("text", ['api_keys: [""]\n', 'api_keys: [team-a, "  "]\n'])
def test_a_blank_api_key_is_refused_not_dropped(tmp_path: Path, text: str) -> None:
    """Dropping it could leave no keys, and no keys means no authentication."""
    with pytest.raises(ConfigError, match=r"api_keys.*empty key"):
        load_config(write(tmp_path, text), env={})


@pytest.mark.parametrize("value", ["", " ", ",,"])
def test_an_empty_api_keys_variable_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="PLURALISM_API_KEYS is set but empty; unset it"):
        load_config(None, env={"PLURALISM_API_KEYS": value})


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("notaurl", "redis://, rediss:// or unix:// URL"),
        ("http://127.0.0.1:6379/0", "redis://, rediss:// or unix:// URL"),
        ("redis://127.0.0.1:6379/zero", "database number"),
    ],
)
def test_a_malformed_redis_url_is_one_line_at_start(tmp_path: Path, url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as info:
        load_config(write(tmp_path, f"redis_url: {url}\n"), env={})
    assert "redis_url" in str(info.value)
