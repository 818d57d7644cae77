"""manifest.json: every file's sha256, written last; tampered, missing or unlisted files are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engines import Manifest, ManifestError, manifest_digest, read_manifest, verify_manifest, write_manifest
from engines.manifest import sha256_file


def _export_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "export"
    directory.mkdir()
    (directory / "vision.onnx").write_bytes(b"\x08\x07" + bytes(range(200)))
    (directory / "model.json").write_text('{"kind": "clip"}')
    (directory / "sub").mkdir()
    (directory / "sub" / "extra.bin").write_bytes(b"x" * 10)
    return directory


def _manifest() -> Manifest:
    return Manifest(
        kind="clip",
        source={"model": "tiny", "revision": "abc"},
        precision="fp32",
        opset=17,
        graphs={"vision": {"file": "vision.onnx", "precision": "fp32"}},
        parity=[{"graph": "vision", "min_cosine": 0.99999}],
        versions={"onnx": "1.0"},
    )


def test_written_manifest_lists_every_file_with_its_sha256(tmp_path: Path) -> None:
    directory = _export_dir(tmp_path)
    write_manifest(directory, _manifest())
    data = json.loads((directory / "manifest.json").read_text())
    assert set(data["files"]) == {"vision.onnx", "model.json", "sub/extra.bin"}
    for name, entry in data["files"].items():
        assert entry["sha256"] == sha256_file(directory / name)
        assert entry["bytes"] == (directory / name).stat().st_size
    assert data["created"] and data["format"] == 1
    manifest = verify_manifest(directory)
    assert manifest.graph_file("vision") == "vision.onnx"
    assert "parity min cosine 0.99999" in manifest.summary()
    assert len(manifest_digest(directory)) == 64


def test_a_tampered_file_is_refused_by_name(tmp_path: Path) -> None:
    directory = _export_dir(tmp_path)
    write_manifest(directory, _manifest())
    data = bytearray((directory / "vision.onnx").read_bytes())
    data[10] ^= 0xFF  # same size, different bytes
    (directory / "vision.onnx").write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"vision\.onnx has sha256 .* the manifest records"):
        verify_manifest(directory)
    # Presence-and-size checking alone does not see a same-size change; hashing does.
    verify_manifest(directory, check_hashes=False)


def test_a_truncated_file_is_refused_even_without_hashing(tmp_path: Path) -> None:
    directory = _export_dir(tmp_path)
    write_manifest(directory, _manifest())
    (directory / "model.json").write_text("{}")
    with pytest.raises(ManifestError, match=r"model\.json has 2 bytes"):
        verify_manifest(directory, check_hashes=False)


def test_a_missing_file_is_refused_by_name(tmp_path: Path) -> None:
    directory = _export_dir(tmp_path)
    write_manifest(directory, _manifest())
    (directory / "sub" / "extra.bin").unlink()
    with pytest.raises(ManifestError, match=r"sub/extra\.bin is missing"):
        verify_manifest(directory)


def test_a_directory_without_manifest_is_not_an_export(tmp_path: Path) -> None:
    directory = _export_dir(tmp_path)
    with pytest.raises(ManifestError, match=r"has no manifest\.json"):
        verify_manifest(directory)
    with pytest.raises(ManifestError, match="model directory not found"):
        read_manifest(tmp_path / "nowhere")


def test_malformed_manifests_are_refused(tmp_path: Path) -> None:
    directory = _export_dir(tmp_path)
    (directory / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="cannot read"):
        read_manifest(directory)
    (directory / "manifest.json").write_text(json.dumps({"format": 1, "kind": "clip"}))
    with pytest.raises(ManifestError, match="malformed manifest"):
        read_manifest(directory)
    (directory / "manifest.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(ManifestError, match="format 99"):
        read_manifest(directory)


def test_a_graph_whose_file_is_not_listed_is_refused(tmp_path: Path) -> None:
    directory = _export_dir(tmp_path)
    manifest = _manifest()
    manifest.graphs["text"] = {"file": "text.onnx"}
    write_manifest(directory, manifest)
    with pytest.raises(ManifestError, match=r"graph 'text' uses 'text\.onnx'"):
        verify_manifest(directory)


def test_unlisted_files_are_reported_and_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = _export_dir(tmp_path)
    write_manifest(directory, _manifest(), files=["vision.onnx", "model.json"])
    verify_manifest(directory)
    assert "sub/extra.bin" in caplog.text


def _age(directory: Path, seconds: float) -> None:
    """Set every file's modification time ``seconds`` into the past (as an export made earlier)."""
    import os

    for path in directory.rglob("*"):
        if path.is_file():
            stat = path.stat()
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - int(seconds * 1e9)))


def test_a_stamp_spares_the_hash_of_unchanged_files_but_not_of_changed_ones(tmp_path: Path) -> None:
    from engines.manifest import STAMP_NAME

    directory = _export_dir(tmp_path)
    write_manifest(directory, _manifest())
    # a file modified within the racy window is hashed every time: the stamp does not vouch for it
    verify_manifest(directory, trust_stamp=True)
    data = bytearray((directory / "vision.onnx").read_bytes())
    data[10] ^= 0xFF
    (directory / "vision.onnx").write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"vision\.onnx has sha256"):
        verify_manifest(directory, trust_stamp=True)
    data[10] ^= 0xFF
    (directory / "vision.onnx").write_bytes(bytes(data))
    _age(directory, 60)
    verify_manifest(directory, trust_stamp=True)  # hashed, and stamped
    stamp = json.loads((directory / STAMP_NAME).read_text())
    assert set(stamp["files"]) == {"vision.onnx", "model.json", "sub/extra.bin"}
    assert STAMP_NAME not in verify_manifest(directory, trust_stamp=True).files  # hidden: not an export file
    # a later change of the file changes its modification time: hashed again, and refused
    data[10] ^= 0xFF
    (directory / "vision.onnx").write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"vision\.onnx has sha256"):
        verify_manifest(directory, trust_stamp=True)
