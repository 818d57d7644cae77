"""Which local files a camera given through the API may read: video files only under the media
folders, devices only under ``/dev``.

The API (and the console) adds, changes and tests cameras for whoever holds the token or a session.
Without this rule a camera URI could name any file the agent can read (``/etc/passwd``), and the
source's error ("this appears to be a text file") would tell what it holds. Cameras in the YAML
and those added with ``watchword camera add`` are the operator's own and are not checked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from agent.redact import redact_text
from agent.sources.base import SourceError
from agent.sources.config import CameraConfig
from agent.sources.uri import parse_source_uri

log = logging.getLogger(__name__)

DEVICE_ROOT = Path("/dev")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


class MediaFolders:
    """The folders whose files a camera given through the API may read (symbolic links and ``..``
    are resolved first, so neither leads out of them).

    Args:
        folders: the media folders; none means no local video file at all.
    """

    def __init__(self, folders: Iterable[Path]) -> None:
        self.folders = tuple(dict.fromkeys(Path(folder).expanduser().resolve() for folder in folders))

    @classmethod
    def default(cls, cameras: Iterable[CameraConfig], state_dir: Path) -> MediaFolders:
        """The folder of each file camera (from the YAML or the state database) and
        ``<state_dir>/media``; a camera file at the filesystem's root does not make ``/`` a folder."""
        folders = [state_dir / "media"]
        for camera in cameras:
            try:
                spec = parse_source_uri(camera.uri)
            except SourceError:
                continue
            if spec.kind == "file" and spec.path is not None:
                folder = spec.path.expanduser().resolve().parent
                if folder == Path(folder.anchor):
                    log.warning(
                        "camera %s: its file is at the filesystem's root, which is not made a media "
                        "folder; set api.media_dirs to read files there through the API",
                        camera.id,
                    )
                    continue
                folders.append(folder)
        return cls(folders)

    def problem(self, uri: str) -> str | None:
        """Why the API may not open ``uri`` (a valid camera URI), or None when it may."""
        try:
            spec = parse_source_uri(uri)
        except SourceError as exc:
            return str(exc)
        shown = redact_text(uri)
        if spec.kind == "v4l2":
            device = Path(unquote(urlsplit(spec.uri).path)).resolve()
            if not _inside(device, DEVICE_ROOT):
                return f"{shown}: a video device must be under {DEVICE_ROOT}"
            return None
        if spec.kind != "file" or spec.path is None:
            return None  # a network or test source reads no local file
        if "://" not in uri and not Path(uri).expanduser().is_absolute():
            return f"{shown}: give an absolute path (a relative one depends on the agent's folder)"
        path = spec.path.resolve()
        if not any(_inside(path, folder) for folder in self.folders):
            where = ", ".join(str(folder) for folder in self.folders) or "none are set"
            return (
                f"{shown}: the API reads local files only under the media folders (api.media_dirs: {where})"
            )
        return None
