"""Dependencies point one way, and no module imports itself back. Read from the source with ``ast``.

The rules:

1. ``invoicing`` never imports ``workers``, at any depth (a function's own imports included):
   invoicing names its background work (``invoicing.background``) and the workers app installs
   what runs it. ``workers`` imports ``invoicing``.
2. ``config`` is the composition root (the Django project and the Celery app): it knows the apps
   by name (``INSTALLED_APPS``, task routes) and imports ``workers`` only where it builds the
   Celery app, listed in :data:`COMPOSITION_ROOT_IMPORTS`. Settings import no app: every process
   reads them, before any app is loaded.
3. No import cycle among the modules of ``invoicing``, ``workers`` and ``config`` (module-level and
   function-level imports alike: a function's import still needs the other module to import).
4. One room per responsibility: no module of those packages is over :data:`MAX_MODULE_LINES` lines
   (migrations aside: Django writes them). A module that grows past it is split by concept.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("invoicing", "workers", "config")

# config -> workers imports the composition root makes: the Celery app gets kombu's Redis
# transport with the fix for a lost Redis before anything connects.
COMPOSITION_ROOT_IMPORTS = {("config.celery", "workers.broker")}
MAX_MODULE_LINES = 500


def package_of(module: str) -> str:
    return module.split(".")[0]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def our_modules() -> dict[str, Path]:
    return {
        module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    }


def imported_names(name: str, path: Path) -> Iterator[str]:
    """Every module name an import statement of the file names, wherever the statement is.

    ``from a import b`` yields ``a.b``, a module or a name in ``a`` (see :func:`module_of`);
    ``importlib.import_module`` with a literal name counts as an import.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield from (f"{base}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value


def module_of(imported: str, modules: Collection[str]) -> str:
    """The module an imported name lives in: its longest prefix that is a module of ours."""
    parts = imported.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return imported


def imports_of(package: str) -> set[tuple[str, str]]:
    """(module, imported module) for every import in ``package`` of a module of ``PACKAGES``."""
    modules = our_modules()
    return {
        (name, module_of(imported, modules))
        for name, path in modules.items()
        if package_of(name) == package
        for imported in imported_names(name, path)
        if package_of(imported) in PACKAGES
    }


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours that importing it runs (the ancestor packages of each target,
    except its own ancestors, which are already importing when it is)."""
    modules = our_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        own_ancestors = {name.rsplit(".", depth)[0] for depth in range(1, name.count(".") + 1)}
        targets = set()
        for imported in imported_names(name, path):
            parts = imported.split(".")
            for end in range(1, len(parts) + 1):
                target = ".".join(parts[:end])
                if target in modules and target != name and target not in own_ancestors:
                    targets.add(target)
        graph[name] = targets
    return graph


def test_invoicing_never_imports_workers() -> None:
    assert (
        sorted(edge for edge in imports_of("invoicing") if package_of(edge[1]) == "workers") == []
    )


def test_config_imports_workers_only_where_it_builds_the_celery_app() -> None:
    found = {edge for edge in imports_of("config") if package_of(edge[1]) == "workers"}
    assert found == COMPOSITION_ROOT_IMPORTS
    settings_imports = {edge[1] for edge in imports_of("config") if edge[0] == "config.settings"}
    assert {package_of(imported) for imported in settings_imports} <= {"config"}


def test_no_import_cycles() -> None:
    cycles = [" -> ".join([*cycle, cycle[0]]) for cycle in cycles_in(import_graph())]
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


def test_no_module_is_over_the_size_limit() -> None:
    sizes = {
        name: len(path.read_text().splitlines())
        for name, path in our_modules().items()
        if ".migrations." not in name
    }
    assert len(sizes) > 50  # the walk found the packages
    assert {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES} == {}


def test_the_cycle_check_finds_cycles() -> None:
    """The check above is only as good as this: one cycle per tangle, named module by module."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"f"}, "f": {"e"}}
    assert cycles_in(graph) == [["a", "b", "c"], ["e", "f"]]
    assert cycles_in({"a": {"b"}, "b": set()}) == []


def cycles_in(graph: dict[str, set[str]]) -> list[list[str]]:
    """For each strongly connected component with a cycle (Tarjan's), one cycle through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_within(graph, component) for component in components]


def _cycle_within(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A path inside the component from its first module back to that module."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        node = frontier.pop(0)
        for target in sorted(graph[node] & component):
            if target == start:
                return paths[node]
            if target not in paths:
                paths[target] = [*paths[node], target]
                frontier.append(target)
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover
