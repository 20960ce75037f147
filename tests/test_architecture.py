"""The layers of ARCHITECTURE.md, enforced: who may import whom, and what lives at the top.

Every import in ``bnfold/`` counts, also one inside a function (a lazy import) or under
``TYPE_CHECKING``: a rule that holds only at run time still couples the layers.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bnfold"

# The front door and what every layer may use; everything else lives in a folder.
TOP_LEVEL_MODULES = {"__init__", "__main__", "api", "cli", "errors", "version"}
FOLDERS = {
    "engine",
    "patterns",
    "storage",
    "runtime",
    "verify",
    "bench",
    "integrations",
    "commands",
}
# What each layer may import besides itself, ``errors`` and ``version``.
ALLOWED: dict[str, set[str]] = {
    "storage": set(),
    "engine": {"storage"},
    "patterns": {"engine", "storage"},
    "runtime": {"storage"},
    "verify": {"runtime", "storage"},
    "bench": {"runtime", "storage"},
    "api": {"engine", "patterns", "storage", "verify", "bench"},
    "integrations": {"api", "engine", "storage", "runtime", "verify"},
    "commands": {"api", "engine", "patterns", "storage", "runtime", "verify", "bench"},
    "cli": {"commands"},
    "__init__": {"api", "verify", "bench", "integrations"},
    "__main__": {"cli"},
}
SHARED = {"errors", "version"}
# click is the command line's: nothing the library or a pipeline imports may need it.
CLICK_LAYERS = {"cli", "commands"}


def _modules(root: Path = PACKAGE) -> Iterator[tuple[str, Path]]:
    """(dotted name, file) of every module; a package is named by its folder, as imported."""
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(("bnfold", *parts)), path


def _layer(module: str) -> str:
    """``bnfold.engine.graph`` -> ``engine``; ``bnfold.api`` -> ``api``; ``bnfold`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every module ``path`` imports (absolute names), with its line."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, node.lineno
            for alias in node.names:  # ``from . import lazyio`` imports a module
                yield f"{target}.{alias.name}", node.lineno


def _bnfold_imports(root: Path = PACKAGE) -> Iterator[tuple[str, str, str, int]]:
    """(importing module, its layer, imported layer, line) for imports of other layers."""
    known = {name for name, _ in _modules(root)}
    for module, path in _modules(root):
        for target, line in _imports(module, path):
            if target not in known or target == "bnfold" and module != "bnfold":
                if target == "bnfold" and module != "bnfold":
                    yield module, _layer(module), "__init__", line
                continue
            if _layer(target) != _layer(module):
                yield module, _layer(module), _layer(target), line


def test_only_the_front_door_lives_at_the_top() -> None:
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top == TOP_LEVEL_MODULES, f"modules at the top of bnfold/: {sorted(top)}"
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert folders == FOLDERS


def _broken(root: Path = PACKAGE) -> list[str]:
    return [
        f"{module}:{line} imports {target}"
        for module, layer, target, line in _bnfold_imports(root)
        if target not in SHARED and target not in ALLOWED.get(layer, set())
    ]


def test_every_import_follows_the_layer_rules() -> None:
    broken = _broken()
    assert not broken, "imports against ARCHITECTURE.md:\n" + "\n".join(broken)


def test_no_import_circle_between_folders() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for _, layer, target, _ in _bnfold_imports():
        edges[layer].add(target)

    def reaches(start: str, goal: str, seen: frozenset[str]) -> bool:
        ahead = edges.get(start, set()) - seen
        return any(nxt == goal or reaches(nxt, goal, seen | {nxt}) for nxt in ahead)

    circles = sorted(layer for layer in list(edges) if reaches(layer, layer, frozenset()))
    assert not circles, f"layers in an import circle: {circles}"


def _module_circles(root: Path = PACKAGE) -> list[list[str]]:
    """Groups of modules that import each other, directly or round about (Tarjan's SCCs);
    an import of the package root (``from bnfold import …``) counts as one of ``bnfold``."""
    known = {name for name, _ in _modules(root)}
    edges = {
        module: {target for target, _ in _imports(module, path) if target in known} - {module}
        for module, path in _modules(root)
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(edges[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return circles


def test_no_import_circle_between_modules() -> None:
    """Not even inside a folder, not even for type checking: a circle means two modules
    that cannot be read, tested or moved one without the other."""
    # The package root imports its front door, which imports everything: only an import of
    # the root from below would close a circle, and the layer rules already forbid it.
    circles = [c for c in _module_circles() if "bnfold" not in c]
    assert not circles, f"modules in an import circle: {circles}"


def test_the_circle_check_finds_a_circle(tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "bnfold"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    shapes = root / "engine" / "shapes.py"
    shapes.write_text(
        shapes.read_text() + "\nif TYPE_CHECKING:\n    from .graph import GraphView\n"
    )
    assert ["bnfold.engine.graph", "bnfold.engine.shapes"] in [
        [m for m in c if m in ("bnfold.engine.graph", "bnfold.engine.shapes")]
        for c in _module_circles(root)
    ]


def test_only_the_command_line_imports_click() -> None:
    users = [
        f"{module}:{line}"
        for module, path in _modules()
        for target, line in _imports(module, path)
        if target.split(".")[0] == "click" and _layer(module) not in CLICK_LAYERS
    ]
    assert not users, f"click imported below the command line: {users}"


@pytest.mark.parametrize(
    ("where", "statement"),
    [
        ("engine/driver.py", "from ..runtime.session import create_session"),
        ("storage/recipes.py", "from ..engine import foldmath"),
        ("verify/sites.py", "    from ..engine.graph import node_label  # lazy"),
        ("runtime/session.py", "from bnfold import api"),
        ("engine/driver.py", "from ..patterns import default_patterns"),  # a package
        ("storage/__init__.py", "from ..engine import driver"),  # from a package's init
    ],
)
def test_the_rules_catch_a_broken_import(tmp_path: Path, where: str, statement: str) -> None:
    """A copy of the package with one bad import added fails the check, naming it."""
    import shutil

    root = tmp_path / "bnfold"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    target = root / where
    body = "def lazily():\n" + statement + "\n" if statement.startswith(" ") else statement + "\n"
    target.write_text(target.read_text() + "\n" + body)
    assert _broken(root) != [] and all(str(where.split("/")[0]) in b for b in _broken(root))


# Settings travel as objects (issue 21): only the public API keeps its documented keyword
# arguments and builds the objects in its first line; everything below takes them whole.
MAX_PARAMETERS = 8
PUBLIC_API = {
    "bnfold.api.optimize",
    "bnfold.api.check",
    "bnfold.verify.verify",
    "bnfold.bench.bench",
    "bnfold.integrations.torch_export.export_torch",
    "bnfold.integrations.keras_export.export_keras",
    "bnfold.integrations.graphsurgeon.fold_graph",
}


def _parameter_count(arguments: ast.arguments) -> int:
    """Every parameter but ``self``/``cls``; ``*args`` and ``**kwargs`` count one each."""
    positional = [a.arg for a in (*arguments.posonlyargs, *arguments.args)]
    count = len(positional) + len(arguments.kwonlyargs)
    count += (arguments.vararg is not None) + (arguments.kwarg is not None)
    return count - 1 if positional and positional[0] in ("self", "cls") else count


def _functions(root: Path = PACKAGE) -> Iterator[tuple[str, int, int]]:
    """(qualified name, line, parameter count) of every function and method in ``root``."""

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, int, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}.{child.name}"
                yield name, child.lineno, _parameter_count(child.args)
                yield from walk(child, name)
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}.{child.name}")
            else:
                yield from walk(child, prefix)

    for module, path in _modules(root):
        yield from walk(ast.parse(path.read_text(), str(path)), module.removesuffix(".__init__"))


def _too_many_parameters(root: Path = PACKAGE) -> list[str]:
    return [
        f"{name} (line {line}): {count} parameters"
        for name, line, count in _functions(root)
        if count > MAX_PARAMETERS and name not in PUBLIC_API
    ]


def test_no_function_outside_the_public_api_takes_more_than_eight_parameters() -> None:
    over = _too_many_parameters()
    assert not over, (
        f"more than {MAX_PARAMETERS} parameters (pass a settings object instead):\n"
        + "\n".join(over)
    )


def test_every_exempt_function_exists() -> None:
    """An exemption outlives no rename: each public function named is still there."""
    missing = PUBLIC_API - {name for name, _, _ in _functions()}
    assert not missing, f"exempt but not found: {sorted(missing)}"


def test_the_parameter_rule_catches_a_long_signature(tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "bnfold"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    target = root / "verify" / "runner.py"
    nine = ", ".join(f"a{i}" for i in range(8))
    target.write_text(
        target.read_text() + f"\n\nclass Loose:\n    def run(self, {nine}, *, b): ...\n"
    )
    line = len(target.read_text().splitlines())
    assert _too_many_parameters(root) == [
        f"bnfold.verify.runner.Loose.run (line {line}): 9 parameters"
    ]
