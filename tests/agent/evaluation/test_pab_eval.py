"""``watchword eval pab`` end to end on a PAB-format fixture made in the test, and its parts."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pab_fixture import ColourChatServer, ColourEncoder, confused_scores, write_fixture

from agent.cli import build_parser, main
from agent.commands.eval import run_pab
from agent.evaluation.cache import EmbeddingCache
from agent.evaluation.pab import PabFormatError, load_pab, load_scores
from agent.evaluation.runner import evaluate_pab


@pytest.fixture
def fixture_files(tmp_path: Path) -> tuple[Path, Path]:
    return write_fixture(tmp_path)


@pytest.fixture
def chat_server() -> Iterator[ColourChatServer]:
    server = ColourChatServer()
    yield server
    server.close()


def _rerank_yaml(path: Path, server: ColourChatServer) -> Path:
    path.write_text(
        "rerank:\n"
        "  enabled: true\n"
        "  top_n: 3\n"
        "  backend:\n"
        "    type: openai\n"
        f"    base_url: {server.base_url}\n"
        "    model: colour-vl\n"
        "    timeout_s: 5\n",
        encoding="utf-8",
    )
    return path


# --- annotations -----------------------------------------------------------------------------


def test_load_pab_builds_gallery_queries_and_relevance(fixture_files: tuple[Path, Path]) -> None:
    annotations, images = fixture_files
    dataset = load_pab(annotations)
    assert dataset.images == (
        "p0/a.jpg",
        "p1/a.jpg",
        "p0/b.jpg",
        "p2/a.jpg",
        "p3/a.jpg",
        "p4/a.jpg",
        "p5/a.jpg",
    )
    assert dataset.image_ids == (100, 101, 100, "p2", 103, 104, 105)
    assert dataset.num_queries == 8  # the first row has two captions, flattened in order
    assert dataset.captions[:2] == (
        "A man in a red shirt falls off his bike.",
        "A person wearing red trips over a curb.",
    )
    assert dataset.caption_rows == (0, 0, 1, 2, 3, 4, 5, 6)
    assert dataset.caption_images == (0, 0, 1, 2, 3, 4, 5, 6)
    # p0/a and p0/b share image_id 100: both relevant to the three red captions
    assert dataset.g_pids[0] == dataset.g_pids[2] != dataset.g_pids[1]
    assert (dataset.q_pids == dataset.g_pids[list(dataset.caption_images)]).all()
    assert len(dataset.image_paths(images)) == 7
    assert load_pab(annotations, limit=2).num_queries == 3


def test_load_pab_reads_a_json_array_too(tmp_path: Path) -> None:
    path = tmp_path / "attr.json"
    path.write_text(json.dumps([{"image": "a.jpg", "image_id": 1, "caption": "one caption as a string"}]))
    dataset = load_pab(path)
    assert dataset.captions == ("one caption as a string",)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"image": "a.jpg", "image_id": 1, "caption": ["x"]}\nnot json\n',
            r"attr.json:2: not a JSON object",
        ),
        ('{"image": "a.jpg", "image_id": 1}\n', r"attr.json:1: 'caption' must be"),
        ('{"image": "", "image_id": 1, "caption": ["x"]}\n', r"'image' must be"),
        ('{"image": "a.jpg", "image_id": 1.5, "caption": ["x"]}\n', r"'image_id' must be"),
        (
            '{"image": "a.jpg", "image_id": 1, "caption": ["x"]}\n'
            '{"image": "a.jpg", "image_id": 2, "caption": ["y"]}\n',
            r"attr.json:2: image 'a.jpg' has image_id 2 here, 1 before",
        ),
        ("\n\n", "no annotation rows"),
    ],
)
def test_load_pab_errors_name_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "attr.json"
    path.write_text(content)
    with pytest.raises(PabFormatError, match=message):
        load_pab(path)


def test_missing_images_are_listed(fixture_files: tuple[Path, Path]) -> None:
    annotations, images = fixture_files
    (images / "p3" / "a.jpg").unlink()
    with pytest.raises(PabFormatError, match=r"1 of 7 images not found .*p3/a.jpg"):
        load_pab(annotations).image_paths(images)


def test_load_scores_checks_shape(fixture_files: tuple[Path, Path], tmp_path: Path) -> None:
    dataset = load_pab(fixture_files[0])
    np.save(tmp_path / "bad.npy", np.zeros((7, 8)))
    with pytest.raises(PabFormatError, match=r"shape \(7, 8\); expected \(8, 7\)"):
        load_scores(tmp_path / "bad.npy", dataset)
    np.save(tmp_path / "good.npy", np.zeros((8, 7)))
    assert load_scores(tmp_path / "good.npy", dataset).shape == (8, 7)


# --- embedding, caching, resuming -------------------------------------------------------------


def test_encoder_path_metrics_and_cache(fixture_files: tuple[Path, Path], tmp_path: Path) -> None:
    annotations, images = fixture_files
    dataset = load_pab(annotations)
    encoder = ColourEncoder()
    report = evaluate_pab(
        dataset,
        encoder=encoder,
        images_dir=images,
        cache_dir=tmp_path / "cache",
        batch_size=3,
        progress=False,
    )
    assert report.coarse.r1 == 100.0 and report.coarse.r5 == 100.0
    assert (encoder.images_embedded, encoder.texts_embedded) == (7, 8)
    assert report.settings["model"] == "colour-encoder-v1"
    # a second run reads both caches and embeds nothing
    again = ColourEncoder()
    report2 = evaluate_pab(
        dataset, encoder=again, images_dir=images, cache_dir=tmp_path / "cache", batch_size=3, progress=False
    )
    assert (again.images_embedded, again.texts_embedded) == (0, 0)
    assert report2.coarse == report.coarse
    # a changed image file invalidates the image cache
    (images / "p5" / "a.jpg").write_bytes((images / "p4" / "a.jpg").read_bytes())
    third = ColourEncoder()
    evaluate_pab(
        dataset, encoder=third, images_dir=images, cache_dir=tmp_path / "cache", batch_size=3, progress=False
    )
    assert (third.images_embedded, third.texts_embedded) == (7, 0)


def test_embedding_cache_resumes_after_an_interruption(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "model-x")
    keys = [f"item {i}" for i in range(10)]
    computed: list[tuple[int, int]] = []

    def failing(start: int, stop: int) -> np.ndarray:
        if start >= 6:
            raise KeyboardInterrupt
        computed.append((start, stop))
        return np.full((stop - start, 4), start, np.float32)

    with pytest.raises(KeyboardInterrupt):
        cache.get_or_compute("texts", keys, failing, chunk_size=3)
    assert computed == [(0, 3), (3, 6)]
    computed.clear()

    def working(start: int, stop: int) -> np.ndarray:
        computed.append((start, stop))
        return np.full((stop - start, 4), start, np.float32)

    progress: list[int] = []
    embeddings = cache.get_or_compute("texts", keys, working, chunk_size=3, on_progress=progress.append)
    assert computed == [(6, 9), (9, 10)]  # only the chunks that were missing
    assert sum(progress) == 10
    assert embeddings[:, 0].tolist() == [0, 0, 0, 3, 3, 3, 6, 6, 6, 9]
    assert not list(tmp_path.glob("*.partial"))  # partial chunks are cleaned up once complete
    assert cache.get_or_compute("texts", keys, failing, chunk_size=3).shape == (10, 4)  # now from the npz


# --- the command ------------------------------------------------------------------------------


def test_cli_scores_only(
    fixture_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    annotations, images = fixture_files
    np.save(tmp_path / "sim.npy", confused_scores(ColourEncoder(), annotations, images))
    report_path = tmp_path / "out" / "report.json"
    status = main(
        [
            *("eval", "pab", "--annotations", str(annotations), "--scores", str(tmp_path / "sim.npy")),
            *("--report", str(report_path), "--no-progress", "--cache-dir", str(tmp_path / "cache")),
        ]
    )
    assert status == 0
    out = capsys.readouterr().out
    assert "R@1" in out and "mINP" in out and "re-ranked" not in out
    report = json.loads(report_path.read_text())
    # the three red captions are right; the other five have their own image second
    assert report["metrics"]["coarse"]["r1"] == pytest.approx(100 * 3 / 8)
    assert report["metrics"]["reranked"] is None
    assert [q["rank_before"] for q in report["per_query"]] == [1, 1, 2, 1, 2, 2, 2, 2]
    assert report["per_query"][0]["rank_after"] is None


def test_cli_rerank_fixes_the_confused_ranking(
    fixture_files: tuple[Path, Path],
    tmp_path: Path,
    chat_server: ColourChatServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    annotations, images = fixture_files
    np.save(tmp_path / "sim.npy", confused_scores(ColourEncoder(), annotations, images))
    config = _rerank_yaml(tmp_path / "rerank.yaml", chat_server)
    argv = ["eval", "pab", "--annotations", str(annotations), "--scores", str(tmp_path / "sim.npy")]
    argv += ["--images", str(images), "--rerank", str(config), "--logit-scale", "10", "--no-progress"]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--report", str(tmp_path / "report.json")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "re-ranked (top 3)" in out
    report = json.loads((tmp_path / "report.json").read_text())
    coarse, reranked = report["metrics"]["coarse"], report["metrics"]["reranked"]
    assert coarse["r1"] == pytest.approx(37.5) and reranked["r1"] == 100.0
    assert reranked["mAP"] > coarse["mAP"]
    assert chat_server.requests == 8 * 3 * 2  # top 3 of each of the 8 queries, two turns each
    green = report["per_query"][2]
    assert (green["rank_before"], green["rank_after"]) == (2, 1)
    assert green["top_after"][0] == "p1/a.jpg"
    rationale = next(r for r in green["reranked"] if r["image"] == "p1/a.jpg")
    colour_blank = next(b for b in rationale["rationale"]["blanks"] if b["category"] == "colour")
    assert (colour_blank["masked"], colour_blank["answer"], colour_blank["agreement"]) == (
        "green",
        "green",
        1.0,
    )
    assert rationale["verdict_source"] == "logprobs" and rationale["verdict_probability"] == pytest.approx(
        0.9
    )
    assert report["settings"]["top_n"] == 3 and report["settings"]["failed_pairs"] == 0

    # a second run resumes every LMM result from the cache: no new requests
    assert main(argv) == 0
    assert chat_server.requests == 48
    assert json.loads((tmp_path / "report.json").read_text())["metrics"] == report["metrics"]


def test_cli_clip_path_with_an_injected_encoder(fixture_files: tuple[Path, Path], tmp_path: Path) -> None:
    annotations, images = fixture_files
    args = build_parser().parse_args(
        [
            *(
                "eval",
                "pab",
                "--annotations",
                str(annotations),
                "--images",
                str(images),
                "--clip",
                str(tmp_path),
            ),
            *("--no-progress", "--no-cache", "--report", str(tmp_path / "r.json"), "--top-n", "2"),
        ]
    )
    encoder = ColourEncoder()
    assert run_pab(args, encoder=encoder) == 0
    assert encoder.images_embedded == 7
    assert json.loads((tmp_path / "r.json").read_text())["metrics"]["coarse"]["r1"] == 100.0


@pytest.mark.slow
def test_cli_clip_path_with_a_tiny_clip_export_and_rerank(
    fixture_files: tuple[Path, Path],
    tmp_path: Path,
    clip_fp32: Path,
    chat_server: ColourChatServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    annotations, images = fixture_files
    config = _rerank_yaml(tmp_path / "rerank.yaml", chat_server)
    argv = ["eval", "pab", "--annotations", str(annotations), "--images", str(images)]
    argv += ["--clip", str(clip_fp32), "--rerank", str(config), "--top-n", "2", "--no-progress"]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--report", str(tmp_path / "report.json")]
    assert main(argv) == 0
    assert "re-ranked (top 2)" in capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    from agent.embedding import ClipEncoder

    encoder = ClipEncoder.load(clip_fp32)
    assert report["settings"]["model"] == encoder.manifest_hash
    assert report["settings"]["logit_scale"] == pytest.approx(encoder.logit_scale)
    for metrics in report["metrics"].values():
        assert metrics["queries"] == 8 and metrics["r10"] == 100.0  # 7 images: all within 10
        assert 0 < metrics["mAP"] <= 100 and 0 < metrics["mINP"] <= 100
    assert chat_server.requests == 8 * 2 * 2  # top 2 of 8 queries, two turns each
    blanks = [b for q in report["per_query"] for r in q["reranked"] for b in r["rationale"]["blanks"]]
    assert any(b["how"] == "same word" for b in blanks)  # the server's colour matched the caption's
    assert {r["rationale"]["agreement_embedder"] for q in report["per_query"] for r in q["reranked"]} == {
        "text-encoder"
    }
    assert len(list((tmp_path / "cache").glob("texts-*.npz"))) == 1
    assert len(list((tmp_path / "cache").glob("images-*.npz"))) == 1


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(argv)
    return status, capsys.readouterr().err


def test_cli_bad_usage_exits_2_with_a_message(
    fixture_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    annotations, images = fixture_files
    base = ["eval", "pab", "--annotations", str(annotations), "--no-progress", "--no-cache"]
    status, err = _run([*base, "--clip", str(tmp_path)], capsys)
    assert status == 2 and "--images is needed" in err
    status, err = _run([*base, "--clip", str(tmp_path / "nope"), "--images", str(images)], capsys)
    assert status == 2 and "cannot load the CLIP export" in err
    np.save(tmp_path / "small.npy", np.zeros((2, 2)))
    status, err = _run([*base, "--scores", str(tmp_path / "small.npy")], capsys)
    assert status == 2 and "expected (8, 7)" in err
    (tmp_path / "bad.yaml").write_text("rerank:\n  backend:\n    type: openai\n    model: m\n  top_n: 0\n")
    np.save(tmp_path / "sim.npy", np.zeros((8, 7)))
    status, err = _run(
        [
            *base,
            "--scores",
            str(tmp_path / "sim.npy"),
            "--images",
            str(images),
            "--rerank",
            str(tmp_path / "bad.yaml"),
        ],
        capsys,
    )
    assert status == 2 and "bad.yaml:5: rerank.top_n" in err and "rerank.backend.base_url: required" in err
    status, err = _run(
        ["eval", "pab", "--annotations", str(tmp_path / "missing.json"), "--scores", "x.npy"], capsys
    )
    assert status == 2 and "cannot read" in err
    status, err = _run([*base, "--scores", str(tmp_path / "sim.npy"), "--top-n", "0"], capsys)
    assert status == 2 and "--top-n must be at least 1" in err
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(
            ["eval", "pab", "--annotations", str(annotations)]
        )  # neither --clip nor --scores
    assert exit_info.value.code == 2


def test_run_pab_namespace_defaults(fixture_files: tuple[Path, Path]) -> None:
    args = build_parser().parse_args(
        ["eval", "pab", "--annotations", str(fixture_files[0]), "--scores", "s.npy"]
    )
    assert isinstance(args, argparse.Namespace)
    assert (args.top_n, args.batch_size, args.engine, args.no_cache) == (None, 32, "onnxruntime", False)
