"""No import cycle in agent/, engines/ or export/, counting imports inside functions and under
``TYPE_CHECKING``: every Import/ImportFrom anywhere in a module is an edge to the project module
it names (a package's ``__init__`` is a module like any other)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "engines", "export")


def _modules(repo: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, whether it is a package's ``__init__``)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((repo / package).rglob("*.py")):
            parts = list(path.relative_to(repo).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def _project_module(name: str, modules: dict[str, tuple[Path, bool]]) -> str | None:
    """The project module ``name`` lands in: itself, or the nearest package above it."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(repo: Path = REPO) -> dict[str, set[str]]:
    """Each project module and the project modules it imports, anywhere in its body."""
    modules = _modules(repo)
    graph: dict[str, set[str]] = {}
    for module, (path, is_package) in modules.items():
        package = module if is_package else module.rpartition(".")[0]
        targets: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(_project_module(alias.name, modules) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = node.module or ""
                for alias in node.names:
                    # ``from agent.alerts import manager`` imports the submodule, not just the package.
                    submodule = f"{source}.{alias.name}"
                    targets.add(submodule if submodule in modules else _project_module(source, modules))
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:
        # Iterative, so that a long import chain cannot hit the recursion limit.
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            module, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[module] = min(low[module], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[module])
                if low[module] == index[module]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == module:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_the_finder_sees_a_cycle_hidden_inside_a_function(tmp_path: Path) -> None:
    (tmp_path / "agent" / "sub").mkdir(parents=True)
    (tmp_path / "engines").mkdir()
    (tmp_path / "export").mkdir()
    (tmp_path / "agent" / "__init__.py").write_text("")
    (tmp_path / "agent" / "sub" / "__init__.py").write_text("from . import b\n")
    (tmp_path / "agent" / "a.py").write_text("from agent.sub.b import thing\n")
    (tmp_path / "agent" / "sub" / "b.py").write_text("def thing():\n    from agent import a\n")
    (tmp_path / "engines" / "c.py").write_text("import agent.a\n")
    graph = import_graph(tmp_path)
    assert graph["agent.sub"] == {"agent.sub.b"} and graph["engines.c"] == {"agent.a"}
    assert cycles(graph) == [["agent.a", "agent.sub.b"]]


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    graph = import_graph()
    described = [" -> ".join(f"{m} (imports {sorted(graph[m] & set(c))})" for m in c) for c in found]
    assert not found, "import cycles:\n" + "\n".join(described)
