"""``watchword models pull|list``: provision models on a connected machine, and see what is there.

``pull`` is the only place in Watchword that downloads: a Hugging Face model (CLIP or an LMM) with
``huggingface_hub.snapshot_download`` at a pinned revision, or an ultralytics YOLO weight file from
its GitHub release, each with a timeout and a clear message when the machine is offline. Models go to
``DIR/KIND/NAME`` with a ``source.json`` saying what was downloaded, from where and when.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

KINDS = ("clip", "yolo", "lmm")
SOURCE_FILE = "source.json"
# Files a Hugging Face model needs besides its weights (configs, tokenizers, processors).
HF_SUPPORT_PATTERNS = ["*.json", "*.txt", "*.model", "*.tiktoken", "*.jinja"]
MIN_WEIGHT_BYTES = 100_000


class PullError(RuntimeError):
    """A download that failed; the message says why (offline, unknown model, timeout)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="download models (on a connected machine) and list the models directory",
        description="Provision models: the only command that downloads anything.",
    )
    actions = parser.add_subparsers(dest="models_action", metavar="ACTION", required=True)
    pull = actions.add_parser(
        "pull",
        help="download a model into the models directory",
        description="Download a Hugging Face model (clip, lmm: a hub id such as "
        "openai/clip-vit-base-patch32) or an ultralytics YOLO weight file (yolo: a release asset such as "
        "yolov8n.pt).",
    )
    pull.add_argument("kind", choices=KINDS, help="what the model is for")
    pull.add_argument("name", help="hub id (clip, lmm) or weight file name (yolo)")
    pull.add_argument("--dir", type=Path, default=Path("models"), help="models directory (default: models/)")
    pull.add_argument("--revision", help="hub branch, tag or commit (default: main, pinned to its commit)")
    pull.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds per network request")
    pull.add_argument("--force", action="store_true", help="download again even if present")
    pull.set_defaults(func=pull_command)
    listing = actions.add_parser(
        "list",
        help="show the models directory",
        description="List pulled models and exports with their manifests.",
    )
    listing.add_argument(
        "--dir", type=Path, default=Path("models"), help="models directory (default: models/)"
    )
    listing.add_argument(
        "--verify", action="store_true", help="also hash exported files against their manifests"
    )
    listing.set_defaults(func=list_command)


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def pull_command(args: argparse.Namespace) -> int:
    from agent.commands import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

    console = _console()
    if args.timeout <= 0:
        console.print("watchword models pull: --timeout must be positive")
        return EXIT_USAGE
    try:
        if args.kind == "yolo":
            target = pull_yolo(args.name, args.dir, args.timeout, args.force, console)
        else:
            target = pull_hf(args.kind, args.name, args.dir, args.revision, args.timeout, args.force, console)
    except PullError as exc:
        console.print(f"watchword models pull: {exc}")
        return EXIT_FAILURE
    except ValueError as exc:
        console.print(f"watchword models pull: {exc}")
        return EXIT_USAGE
    console.print(f"pulled {args.kind} {args.name} -> {target}")
    return EXIT_OK


def _safe_name(name: str) -> str:
    from export.source import safe_name

    return safe_name(name)


def _write_source(path: Path, data: dict[str, Any]) -> None:
    data = {**data, "pulled": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _offline_message(host: str, exc: BaseException) -> str:
    return (
        f"cannot reach {host} ({type(exc).__name__}: {exc}). This machine looks offline: pull models on a "
        "connected machine and copy the models directory over"
    )


def pull_hf(
    kind: str, repo_id: str, models_dir: Path, revision: str | None, timeout: float, force: bool, console: Any
) -> Path:
    """Download a Hugging Face model snapshot (configs, tokenizer, processor, safetensors weights)."""
    try:
        from huggingface_hub import HfApi, constants, snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            HFValidationError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError as exc:
        raise PullError(
            f"pulling {kind} models needs huggingface_hub: pip install 'watchword[export]' ({exc})"
        ) from exc
    target = models_dir / kind / _safe_name(repo_id)
    if (target / SOURCE_FILE).is_file() and not force:
        console.print(f"{target} is already there (use --force to download again)")
        return target
    constants.HF_HUB_DOWNLOAD_TIMEOUT = int(max(1, timeout))
    constants.HF_HUB_ETAG_TIMEOUT = int(max(1, timeout))
    try:
        info = HfApi().model_info(repo_id, revision=revision, timeout=timeout)
    except HFValidationError as exc:
        raise ValueError(f"{repo_id!r} is not a hub id (owner/name): {exc}") from exc
    except (RepositoryNotFoundError, GatedRepoError) as exc:
        raise PullError(f"{repo_id} is not a public model on huggingface.co ({type(exc).__name__})") from exc
    except RevisionNotFoundError as exc:
        raise PullError(f"{repo_id} has no revision {revision!r}") from exc
    except OfflineModeIsEnabled as exc:
        raise PullError(f"HF_HUB_OFFLINE is set, so nothing can be downloaded: {exc}") from exc
    except Exception as exc:  # httpx/requests connection and timeout errors
        raise PullError(_offline_message("huggingface.co", exc)) from exc
    files = [sibling.rfilename for sibling in info.siblings or []]
    weights = [f for f in files if f.endswith(".safetensors")] or [f for f in files if f.endswith(".bin")]
    if not weights:
        raise PullError(f"{repo_id} has no .safetensors or .bin weights")
    patterns = HF_SUPPORT_PATTERNS + (["*.safetensors"] if weights[0].endswith(".safetensors") else ["*.bin"])
    target.mkdir(parents=True, exist_ok=True)
    console.print(f"downloading {repo_id}@{info.sha} ({len(weights)} weight files) to {target}")
    try:
        snapshot_download(
            repo_id=repo_id,
            revision=info.sha,
            local_dir=target,
            allow_patterns=patterns,
            etag_timeout=timeout,
        )
    except Exception as exc:  # network failures mid-download surface as many types
        raise PullError(f"downloading {repo_id} failed: {type(exc).__name__}: {exc}") from exc
    _write_source(
        target / SOURCE_FILE, {"kind": kind, "repo_id": repo_id, "revision": info.sha, "files": patterns}
    )
    return target


def _yolo_release() -> tuple[str, str, frozenset[str]]:
    from agent._ultralytics import import_ultralytics

    import_ultralytics()
    from ultralytics.utils import downloads

    release = inspect.signature(downloads.attempt_download_asset).parameters["release"].default
    return str(downloads.GITHUB_ASSETS_REPO), str(release), frozenset(downloads.GITHUB_ASSETS_NAMES)


def pull_yolo(name: str, models_dir: Path, timeout: float, force: bool, console: Any) -> Path:
    """Download an ultralytics release asset (``yolov8n.pt``, ``yolo11s.pt`` ...) with a timeout."""
    repo, release, assets = _yolo_release()
    if name not in assets or not name.endswith(".pt"):
        known = sorted(a for a in assets if a.endswith(".pt") and "-" not in a)[:12]
        raise ValueError(
            f"{name!r} is not an ultralytics release weight file; for example {', '.join(known)}"
        )
    directory = models_dir / "yolo"
    target = directory / name
    if target.is_file() and not force:
        console.print(f"{target} is already there (use --force to download again)")
        return target
    url = f"https://github.com/{repo}/releases/download/{release}/{name}"
    directory.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + f".part{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as handle:
            total = int(response.headers.get("Content-Length") or 0)
            _copy_with_progress(response, handle, total, name)
    except urllib.error.HTTPError as exc:
        partial.unlink(missing_ok=True)
        raise PullError(f"{url} answered {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise PullError(_offline_message("github.com", exc)) from exc
    if partial.stat().st_size < MIN_WEIGHT_BYTES:
        partial.unlink(missing_ok=True)
        raise PullError(f"{url} returned only a few bytes; not a weight file")
    os.replace(partial, target)
    from engines.manifest import sha256_file

    _write_source(
        directory / f"{Path(name).stem}.{SOURCE_FILE}",
        {"kind": "yolo", "url": url, "file": name, "sha256": sha256_file(target)},
    )
    return target


def _copy_with_progress(response: Any, handle: Any, total: int, label: str) -> None:
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=_console(),
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=total or None)
        while chunk := response.read(1 << 16):
            handle.write(chunk)
            progress.advance(task, len(chunk))


def list_command(args: argparse.Namespace) -> int:
    from rich.table import Table

    from agent.commands import EXIT_FAILURE, EXIT_OK
    from engines.manifest import MANIFEST_NAME, ManifestError, read_manifest, verify_manifest

    console = _console()
    root: Path = args.dir
    if not root.is_dir():
        console.print(f"watchword models list: no models directory {root} (pull or export something first)")
        return EXIT_FAILURE
    table = Table(title=f"models in {root}")
    for column in ("kind", "name", "size", "what"):
        table.add_column(column)
    bad = 0
    for kind_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for entry in sorted(p for p in kind_dir.iterdir() if not p.name.startswith(".")):
            if entry.name.endswith(SOURCE_FILE) and entry.is_file():
                continue
            size = _size(entry)
            if entry.is_dir() and (entry / MANIFEST_NAME).is_file():
                try:
                    manifest = verify_manifest(entry) if args.verify else read_manifest(entry)
                    what = ("verified: " if args.verify else "export: ") + manifest.summary()
                except ManifestError as exc:
                    bad += 1
                    what = f"[red]invalid export: {str(exc).splitlines()[0]}[/red]"
            else:
                what = _pulled_summary(entry)
            table.add_row(kind_dir.name, entry.name, f"{size / 1e6:.1f} MB", what)
    console.print(table)
    return EXIT_FAILURE if bad else EXIT_OK


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _pulled_summary(entry: Path) -> str:
    source = entry / SOURCE_FILE if entry.is_dir() else entry.with_name(f"{entry.stem}.{SOURCE_FILE}")
    if source.is_file():
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
            origin = data.get("repo_id") or data.get("url", "?")
            revision = f"@{str(data['revision'])[:12]}" if data.get("revision") else ""
            return f"pulled {origin}{revision} on {data.get('pulled', '?')}"
        except (OSError, ValueError):
            pass
    return "copied in (no source.json)"
