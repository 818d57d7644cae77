"""One limit on a query's text wherever it comes from (CLI, API, the YAML's ``queries:``), and a
warning, naming why, when a query's text may not be English (it is accepted, but matches little)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.api.app import ApiContext, create_app
from agent.api.server import ApiServer
from agent.config import ConfigError, parse_config
from agent.pose.vocabulary import CUE_PHRASES, ORDINARY_PHRASES
from agent.queries import QueryRegistry
from agent.queries.bounds import MAX_QUERY_TEXT_CHARS
from agent.queries.language import ENGLISH_WORDS, language_problem

REPO = Path(__file__).resolve().parents[3]
TOKEN = "test-token-0123456789abcdef"
SPANISH = "una persona que se cae al suelo"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env=env,
    )


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[ApiServer, QueryRegistry]]:
    registry = QueryRegistry(tmp_path / "api.db")
    context = ApiContext(registry=registry, token=TOKEN, health=lambda: {}, metrics=lambda: "")
    server = ApiServer(create_app(context), "127.0.0.1", 0)
    server.start()
    yield server, registry
    server.stop()
    registry.close()


def _post(server: ApiServer, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(server.url + "/queries", data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize("length", [MAX_QUERY_TEXT_CHARS + 1, 2001])
def test_one_text_limit_for_the_cli_the_api_and_the_yaml(
    tmp_path: Path, api: tuple[ApiServer, QueryRegistry], length: int
) -> None:
    text = "a person " + "x" * (length - 9)
    expected = f"query text is {length} characters; the limit is {MAX_QUERY_TEXT_CHARS}"
    cli = _cli("query", "add", text, "--db", str(tmp_path / "cli.db"), cwd=tmp_path)
    assert cli.returncode == 2 and expected in cli.stderr
    status, answer = _post(api[0], {"text": text})  # the API's schema holds the same limit
    assert status == 422 and f"at most {MAX_QUERY_TEXT_CHARS} characters" in json.dumps(answer)
    with pytest.raises(ConfigError, match=re.escape(expected)):
        parse_config(f"cameras: [{{id: a, uri: 'test://'}}]\nqueries:\n  - text: {text}\n", "site.yaml")
    # the limit itself is accepted everywhere
    longest = text[:MAX_QUERY_TEXT_CHARS]
    assert _cli("query", "add", longest, "--db", str(tmp_path / "cli.db"), cwd=tmp_path).returncode == 0
    assert _post(api[0], {"text": longest})[0] == 201
    yaml = f"cameras: [{{id: a, uri: 'test://'}}]\nqueries:\n  - text: {longest}\n"
    assert parse_config(yaml).queries[0].text == longest


@pytest.mark.parametrize(
    "text",
    [
        "a person falling down",
        "someone standing still for a long time",
        "somebody collapsed",
        "a man in a red jacket",
        "vandalism near the dumpster",
        "forklift near pedestrians",
        "person loitering",
    ],
)
def test_english_queries_raise_no_language_warning(text: str) -> None:
    assert language_problem(text) is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (SPANISH, "0 of its 7 words (una, persona, que, se, cae, al, ...)"),
        ("eine Person fällt hin", "1 of its 4 words (eine, person, fällt, hin)"),
        ("uma pessoa caindo no chão", "0 of its 5 words"),
        ("人が倒れる", "mostly non-ASCII (5 of 5 letters)"),
        ("Человек падает на землю", "mostly non-ASCII (20 of 20 letters)"),
    ],
)
def test_queries_that_may_not_be_english_are_named_with_why(text: str, why: str) -> None:
    problem = language_problem(text)
    assert problem is not None and why in problem and "may not be English" in problem


def test_every_cue_vocabulary_word_counts_as_english() -> None:
    phrases = [p for ps in CUE_PHRASES.values() for p in ps] + list(ORDINARY_PHRASES)
    words = {w for p in phrases for w in re.findall(r"[a-z]{2,}", p)}
    assert words <= ENGLISH_WORDS, sorted(words - ENGLISH_WORDS)


def test_adding_a_query_that_may_not_be_english_warns_and_keeps_it(tmp_path: Path) -> None:
    database = str(tmp_path / "w.db")
    added = _cli("query", "add", SPANISH, "--db", database, cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert "WARNING" in added.stderr and "may not be English" in added.stderr
    assert "0 of its 7 words" in added.stderr
    quiet = _cli("query", "add", "a person falling down", "--db", database, cwd=tmp_path)
    assert quiet.returncode == 0 and "WARNING" not in quiet.stderr


@pytest.mark.slow
def test_with_cues_and_no_clip_query_add_says_the_query_is_not_evaluated(tmp_path: Path) -> None:
    config = tmp_path / "demo.yaml"
    config.write_text(f"state_dir: {tmp_path}/state\ncameras: [{{id: a, uri: 'test://'}}]\npose: {{}}\n")
    added = _cli("query", "add", SPANISH, "--config", str(config), cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert "query 1 maps to no behaviour cue (" in added.stderr
    assert "the agent will not evaluate it" in added.stderr
    mapped = _cli("query", "add", "a person falling down", "--config", str(config), cwd=tmp_path)
    assert mapped.returncode == 0 and "maps to no behaviour cue" not in mapped.stderr
