"""A small PAB-format benchmark made in the test, a colour "CLIP" and a colour-seeing LMM server.

The gallery is seven JPEG "person" images, each a coloured figure on a grey background; two share an
``image_id`` (several relevant images). Captions name the figure's colour. :class:`ColourEncoder`
embeds images and texts by colour (a stand-in for CLIP with the same interface), and
:class:`ColourChatServer` is a test double of an OpenAI-compatible LMM server that looks at the
image it gets and fills the colour blank with what it sees.
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np

COLOURS_BGR: dict[str, tuple[int, int, int]] = {
    "red": (0, 0, 230),
    "green": (0, 170, 0),
    "blue": (230, 0, 0),
    "yellow": (0, 230, 230),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
NAMES = list(COLOURS_BGR)

# (image, image_id, colour, captions)
ROWS: list[tuple[str, int | str, str, list[str]]] = [
    (
        "p0/a.jpg",
        100,
        "red",
        ["A man in a red shirt falls off his bike.", "A person wearing red trips over a curb."],
    ),
    ("p1/a.jpg", 101, "green", ["A boy in a green jacket is hit by a ball."]),
    ("p0/b.jpg", 100, "red", ["A woman in a red dress slips on the floor."]),
    ("p2/a.jpg", "p2", "blue", ["A girl in a blue coat is pushed off a swing."]),
    ("p3/a.jpg", 103, "yellow", ["A man in a yellow vest crashes into a wall."]),
    ("p4/a.jpg", 104, "white", ["A child in a white hoodie tumbles down the stairs."]),
    ("p5/a.jpg", 105, "black", ["A skier in a black helmet collides with a tree."]),
]


def person_image(colour: str) -> np.ndarray:
    """A 96x48 BGR image: a figure of the colour on grey."""
    image = np.full((96, 48, 3), 128, np.uint8)
    image[16:88, 12:36] = COLOURS_BGR[colour]
    return image


def write_fixture(root: Path) -> tuple[Path, Path]:
    """Write ``attr.json`` and the JPEG images under ``root``; returns (annotations, images folder)."""
    images = root / "imgs"
    for image, _, colour, _ in ROWS:
        path = images / image
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            assert cv2.imwrite(str(path), person_image(colour), [cv2.IMWRITE_JPEG_QUALITY, 95])
    annotations = root / "attr.json"
    lines = [json.dumps({"image": i, "image_id": d, "caption": c}) for i, d, _, c in ROWS]
    annotations.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return annotations, images


def load(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, path
    return image


def colour_of(image: np.ndarray | None) -> str:
    """The listed colour nearest to the mean of the image's central region."""
    assert image is not None
    height, width = image.shape[:2]
    centre = image[height // 4 : 3 * height // 4, width // 3 : 2 * width // 3].reshape(-1, 3).mean(axis=0)
    distances = {name: float(np.linalg.norm(centre - np.array(bgr))) for name, bgr in COLOURS_BGR.items()}
    return min(distances, key=lambda name: distances[name])


def _one_hot(index: int | None) -> np.ndarray:
    vector = np.full(len(NAMES) + 1, 0.05, np.float32)
    vector[-1] = 0.3
    if index is not None:
        vector[index] = 1.0
    return vector / np.linalg.norm(vector)


class ColourEncoder:
    """A CLIP stand-in with ClipEncoder's interface: images and texts embed by the colour in them."""

    logit_scale = 10.0
    manifest_hash = "colour-encoder-v1"

    def __init__(self) -> None:
        self.images_embedded = 0
        self.texts_embedded = 0

    def embed_images(self, images_bgr: Sequence[np.ndarray]) -> np.ndarray:
        self.images_embedded += len(images_bgr)
        return np.stack([_one_hot(NAMES.index(colour_of(image))) for image in images_bgr])

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.texts_embedded += len(texts)
        rows = []
        for text in texts:
            found = [NAMES.index(w) for w in re.findall(r"[a-z]+", text.lower()) if w in NAMES]
            rows.append(_one_hot(found[0] if found else None))
        return np.stack(rows)


def confused_scores(encoder: ColourEncoder, annotations: Path, images: Path) -> np.ndarray:
    """The encoder's similarity, but each non-red query ranks the next colour's image just above its own."""
    from agent.evaluation.pab import load_pab

    dataset = load_pab(annotations)
    texts = encoder.embed_texts(list(dataset.captions))
    gallery = encoder.embed_images([load(p) for p in dataset.image_paths(images)])
    scores = (texts @ gallery.T).astype(np.float32)
    colours = [colour_of(load(p)) for p in dataset.image_paths(images)]
    for query, own in enumerate(dataset.caption_images):
        if colours[own] == "red":
            continue
        wrong = (own + 1) % len(colours)
        while colours[wrong] == colours[own]:
            wrong = (wrong + 1) % len(colours)
        scores[query, wrong] = scores[query, own] + 0.02
    return scores


class ColourChatServer:
    """A test double of an OpenAI-compatible chat server on 127.0.0.1 that sees colours.

    For each request it decodes the image (in the conversation's first user message). On the cloze
    turn it fills the blank whose hint is "a colour" with the colour it sees (other blanks UNKNOWN);
    on the verdict turn (the last user message reveals the description) it answers "yes" when the
    description names that colour, "no" otherwise, with log-probabilities (0.9 for its answer).
    """

    def __init__(self) -> None:
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                server.requests += 1
                payload = json.dumps(server.answer(body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        users = [m["content"] for m in body["messages"] if m["role"] == "user"]
        parts = users[0]
        last = users[-1]
        prompt = last if isinstance(last, str) else next(p["text"] for p in last if p["type"] == "text")
        url = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
        image = cv2.imdecode(
            np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR
        )
        seen = colour_of(image)
        blanks = {number: "UNKNOWN" for number in re.findall(r"^\[(\d+)\]: ", prompt, re.M)}
        for number in re.findall(r"^\[(\d+)\]: a colour$", prompt, re.M):
            blanks[number] = seen
        description = re.search(r'match(?:es)? this whole description: "(.*)"', prompt)
        verdict = "yes" if description and seen in description.group(1).lower() else "no"
        other = "no" if verdict == "yes" else "yes"
        head = json.dumps({"blanks": blanks})[:-1] + ', "verdict": "'
        tokens = [
            {"token": head, "logprob": 0.0, "top_logprobs": []},
            {
                "token": verdict,
                "logprob": math.log(0.9),
                "top_logprobs": [
                    {"token": verdict, "logprob": math.log(0.9)},
                    {"token": other, "logprob": math.log(0.1)},
                ],
            },
            {"token": '"}', "logprob": 0.0, "top_logprobs": []},
        ]
        content = "".join(str(t["token"]) for t in tokens)
        return {
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "logprobs": {"content": tokens},
                }
            ]
        }

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
