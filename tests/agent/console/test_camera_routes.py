"""Cameras given through the API on a real server (uvicorn on 127.0.0.1) with the console's real parts
(``ConsoleRuntime``: camera table, GStreamer probe, media folders): a URI that adding a camera
refuses is refused by *Test connection* too (422, not 500), and local files are read only under the
media folders, whatever the path's spelling."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from agent.api.app import ApiContext, create_app
from agent.api.server import ApiServer
from agent.config import parse_config
from agent.console.wiring import ConsoleRuntime

TOKEN = "camera-routes-token-0123456789"


@contextmanager
def console_api(root: Path, video: Path, api_extra: str = "") -> Iterator[ApiServer]:
    config = parse_config(
        f"""
state_dir: {root}/state
cameras:
  - {{id: sample, uri: "{video}"}}
api: {{enabled: true, port: 0, token: {TOKEN}{api_extra}}}
"""
    )
    runtime = ConsoleRuntime(config)
    from agent.queries import QueryRegistry

    registry = QueryRegistry(config.database)
    context = ApiContext(
        registry=registry, token=TOKEN, health=dict, metrics=str, console=runtime.services(TOKEN)
    )
    server = ApiServer(create_app(context), "127.0.0.1", 0)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        registry.close()
        runtime.close()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, sample_video: Path) -> Iterator[ApiServer]:
    with console_api(tmp_path_factory.mktemp("camera-routes"), sample_video) as server:
        yield server


def call(server: ApiServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        connection.request(method, path, None if body is None else json.dumps(body), headers)
        response = connection.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        connection.close()


@pytest.mark.parametrize(
    "uri",
    [
        "ftp://cam.example/stream",  # unknown scheme
        "rtsp://cam.example:99999/stream",  # port out of range
        "rtsp://cam.example:port/stream",  # port not a number
        "rtsp:///stream",  # no host
        "rtsp://cam.example/a stream",  # a blank
        " /videos/a.mp4",  # a leading blank
        "/videos/a\x01.mp4",  # a control character
        "test://?fps=0",
    ],
)
def test_test_connection_refuses_what_adding_a_camera_refuses_with_422(api: ApiServer, uri: str) -> None:
    tested, test_body = call(api, "POST", "/cameras/test", {"uri": uri})
    added, add_body = call(api, "POST", "/cameras", {"id": "bad", "uri": uri})
    assert (tested, added) == (422, 422), (test_body, add_body)
    assert test_body["detail"][0]["msg"] == add_body["detail"][0]["msg"]  # the same rule, the same words


@pytest.mark.parametrize(
    "uri",
    [
        "/etc/passwd",
        "file:///etc/passwd",
        "etc/passwd",  # relative to the agent's working directory
        "~/.bashrc",
        "/usr/share/doc/opencv-doc/examples/data/../../../../../etc/passwd",
        "file:///usr/share/doc/opencv-doc/examples/data/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "v4l2:///etc/passwd",
    ],
)
def test_local_files_outside_the_media_folders_are_not_read(api: ApiServer, uri: str) -> None:
    status, body = call(api, "POST", "/cameras/test", {"uri": uri})
    assert status == 422, body
    text = json.dumps(body)
    assert "text file" not in text and "not found" not in text  # nothing about the file itself
    assert call(api, "POST", "/cameras", {"id": "peek", "uri": uri})[0] == 422
    assert call(api, "PATCH", "/cameras/sample", {"uri": uri})[0] == 422
    assert call(api, "GET", "/cameras/peek")[0] == 404


def test_the_configured_cameras_folder_is_a_media_folder(api: ApiServer, sample_video: Path) -> None:
    status, body = call(api, "POST", "/cameras/test", {"uri": str(sample_video)})
    assert status == 200 and body["ok"] and body["snapshot"].startswith("data:image/jpeg;base64,")
    status, body = call(api, "POST", "/cameras/test", {"uri": sample_video.as_uri()})
    assert status == 200 and body["ok"]
    missing = sample_video.parent / "no-such-video.mp4"
    status, body = call(api, "POST", "/cameras/test", {"uri": str(missing)})
    assert status == 200 and not body["ok"] and "no-such-video.mp4" in body["error"]
    assert call(api, "POST", "/cameras/test", {"id": "sample"})[1]["ok"]  # a stored camera
    status, body = call(api, "POST", "/cameras/test", {"uri": "test://?fps=5&width=64&height=48"})
    assert status == 200 and body["ok"] and body["width"] == 64  # no local file: no folder rule


def test_state_media_folder_is_one_and_links_out_of_it_are_not_followed(
    tmp_path: Path, sample_video: Path
) -> None:
    media = tmp_path / "state" / "media"
    media.mkdir(parents=True)
    (media / "clip.avi").symlink_to(sample_video)  # resolves into the camera's folder: allowed
    (media / "passwd").symlink_to("/etc/passwd")
    with console_api(tmp_path, sample_video) as server:
        assert call(server, "POST", "/cameras/test", {"uri": str(media / "clip.avi")})[1]["ok"]
        status, body = call(server, "POST", "/cameras/test", {"uri": str(media / "passwd")})
        assert status == 422 and "media folders" in body["detail"][0]["msg"]


def test_api_media_dirs_replaces_the_default_folders(tmp_path: Path, sample_video: Path) -> None:
    own = tmp_path / "videos"
    own.mkdir()
    with console_api(tmp_path, sample_video, f", media_dirs: ['{own}']") as server:
        status, body = call(server, "POST", "/cameras/test", {"uri": str(sample_video)})
        assert status == 422 and str(own) in body["detail"][0]["msg"]
        status, body = call(server, "POST", "/cameras/test", {"uri": str(own / "missing.mp4")})
        assert status == 200 and not body["ok"]
