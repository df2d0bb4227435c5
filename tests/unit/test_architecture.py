"""The rooms and the direction of their dependencies (docs/ARCHITECTURE.md).

import-linter checks the layers contract in pyproject.toml (scripts/test.sh runs `lint-imports`);
these tests check what that contract cannot: that every module sits in some layer (a new module
cannot slip past it), that no two modules import each other in a circle, and that other rooms
reach the runtime through its public names only.
"""

import tomllib
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]


@cache
def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


@cache
def _graph() -> grimp.ImportGraph:
    return grimp.build_graph(*_config()["root_packages"])


def _layer_modules() -> list[str]:
    (contract,) = [c for c in _config()["contracts"] if c["type"] == "layers"]
    modules: list[str] = []
    for layer in contract["layers"]:
        modules += [part.strip() for part in layer.replace("|", ":").split(":")]
    return modules


def _within(module: str, parents: Iterable[str]) -> bool:
    return any(module == parent or module.startswith(parent + ".") for parent in parents)


def test_every_module_belongs_to_a_layer():
    layered = _layer_modules()
    roots = set(_config()["root_packages"])
    outside = sorted(
        module
        for module in _graph().modules
        if module not in roots and ".migrations" not in module and not _within(module, layered)
    )
    assert outside == [], f"add these modules to a layer in pyproject.toml: {outside}"


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_through_others():
    graph = _graph()
    edges = {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    assert _cycles(edges) == []


def test_the_cycle_finder_finds_one():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_other_rooms_use_the_runtimes_public_names_only():
    graph = _graph()
    reaching_in = sorted(
        f"{detail['importer']}:{detail['line_number']} {detail['line_contents']}"
        for imported in graph.find_descendants("runtime")
        for importer in graph.find_modules_that_directly_import(imported)
        if not _within(importer, ["runtime"])
        for detail in graph.get_import_details(importer=importer, imported=imported)
        # `from runtime import registry` names the registry object, which grimp reads as the
        # module runtime.registry: what matters is that the line imports from the package.
        if not detail["line_contents"].startswith("from runtime import ")
    )
    assert reaching_in == [], "import these from `runtime` (runtime/__init__.py)"
