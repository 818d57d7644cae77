"""Property-based tests (hypothesis) of what users type: config files, query texts, camera URIs.

Each property is a promise: bad input ends in the one error type the CLI turns into a one-line
message and exit 2, never in another exception; what the load-time URI check accepts, the runtime
source parser accepts too; a password never survives redaction.
"""

from __future__ import annotations

import math
import string
from pathlib import Path

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent.config import ConfigError, parse_config
from agent.queries import QueryError, QueryRegistry, validate_query_text
from agent.queries.bounds import MAX_COOLDOWN_S
from agent.redact import redact_text
from agent.sources.base import SourceError
from agent.sources.uri import parse_source_uri
from agent.uri_rules import camera_uri_problem

FAST = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
    derandomize=True,
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
camera_keys = st.sampled_from(
    [
        "id",
        "uri",
        "enabled",
        "analysis_fps",
        "max_width",
        "max_height",
        "loop",
        "queue_size",
        "latency_ms",
        "rtsp_transport",
        "reconnect",
        "stall_timeout_s",
        "bogus",
    ]
)
cameras = st.lists(st.dictionaries(camera_keys, scalars, max_size=6), max_size=3)
top_keys = st.sampled_from(
    ["site", "state_dir", "database", "log_level", "alerts", "api", "output", "cameras"]
)


@FAST
@given(camera_list=cameras, extra=st.dictionaries(top_keys, scalars, max_size=3))
def test_any_config_document_loads_or_is_a_config_error(camera_list: list[dict], extra: dict) -> None:
    document = {**extra, "cameras": camera_list}
    try:
        text = yaml.safe_dump(document, allow_unicode=True)
    except yaml.YAMLError:
        return
    try:
        config = parse_config(text, "fuzz.yaml")
    except ConfigError as exc:
        assert str(exc).startswith(("invalid configuration", "fuzz.yaml"))
        return
    for camera in config.cameras:  # what loads is usable: finite numbers, a URI the sources accept
        assert camera.analysis_fps is None or math.isfinite(camera.analysis_fps)
        assert camera_uri_problem(camera.uri) is None


@FAST
@given(text=st.text(max_size=200))
def test_any_text_as_a_config_file_is_a_config_error_or_a_config(text: str) -> None:
    try:
        config = parse_config(text, "fuzz.yaml")
    except ConfigError as exc:
        assert "fuzz.yaml" in str(exc) or str(exc).startswith("invalid configuration")
        return
    assert config.cameras


@FAST
@given(text=st.text(max_size=600))
def test_query_text_is_accepted_clean_or_refused_with_a_reason(text: str) -> None:
    try:
        cleaned = validate_query_text(text)
    except QueryError as exc:
        assert str(exc)
        return
    assert cleaned == cleaned.strip() and 1 <= len(cleaned) <= 500
    assert not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in cleaned)


@settings(
    max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True
)
@given(
    cooldown=st.floats(allow_nan=True, allow_infinity=True),
    cameras=st.one_of(st.none(), st.lists(st.text(max_size=70), max_size=70)),
    prompts=st.one_of(st.none(), st.lists(st.text(min_size=1, max_size=20), max_size=40)),
)
def test_registry_stores_only_what_it_can_give_back(
    tmp_path: Path, cooldown: float, cameras: list[str] | None, prompts: list[str] | None
) -> None:
    registry = QueryRegistry(tmp_path / "q.db")
    try:
        query = registry.add("a person", cooldown_s=cooldown, cameras=cameras, normal_prompts=prompts)
    except QueryError:
        return
    finally:
        registry.close()
    assert query.cooldown_s is None or (
        math.isfinite(query.cooldown_s) and 0 <= query.cooldown_s <= MAX_COOLDOWN_S
    )
    assert query.cameras is None or len(query.cameras) <= 64
    assert query.normal_prompts is None or len(query.normal_prompts) <= 32
    assert registry_roundtrip(tmp_path, query.id) == query


def registry_roundtrip(folder: Path, query_id: int) -> object:
    registry = QueryRegistry(folder / "q.db")
    try:
        return registry.get(query_id)
    finally:
        registry.close()


uri_text = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda scheme, host, rest: f"{scheme}://{host}{rest}",
        st.sampled_from(["rtsp", "http", "https", "file", "test", "v4l2", "gopher", "RTSP", ""]),
        st.text(alphabet=string.ascii_letters + string.digits + ".:@[]%-_ ", max_size=20),
        st.text(alphabet=string.printable, max_size=30),
    ),
)


@FAST
@given(uri=uri_text)
@example(uri="~0")  # found by this test: a ~user that names no user crashed the source at run time
@example(uri="gopher://camera/1")
def test_uris_accepted_at_load_are_accepted_by_the_sources(uri: str) -> None:
    problem = camera_uri_problem(uri)
    if problem is None:
        try:
            parse_source_uri(uri)
        except SourceError as exc:
            raise AssertionError(f"accepted at load, refused at run time: {uri!r}: {exc}") from exc


@FAST
@given(
    scheme=st.sampled_from(["rtsp", "rtsps", "http", "https"]),
    user=st.text(alphabet=string.ascii_lowercase + "._-", max_size=8),
    password=st.text(
        alphabet=string.ascii_uppercase + string.digits + "!$&'()*+,;=~@:", min_size=4, max_size=16
    ),
    host=st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=10),
    path=st.text(alphabet=string.ascii_lowercase + "/?=&", max_size=15),
    before=st.text(alphabet=string.ascii_lowercase + " ()'\"", max_size=10),
)
def test_a_password_never_survives_redaction(
    scheme: str, user: str, password: str, host: str, path: str, before: str
) -> None:
    uri = f"{scheme}://{user}:{password}@{host}/{path}"
    shown = redact_text(f"{before}{uri} failed")
    assert password not in shown
    assert f"{host}/" in shown
