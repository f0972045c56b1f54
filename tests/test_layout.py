"""The package's layout: imports go one way (core <- data, checkpoint <- config, tracking <-
evaluation <- training <- cli), with no circles, and byol.core imports nothing else from byol."""
import ast
from pathlib import Path

import byol

PACKAGE = Path(byol.__file__).parent
LAYERS = {"core": 0, "version": 0, "progress": 0, "wording": 0, "pretrained": 0, "data": 1, "checkpoint": 1, "config": 2, "tracking": 2,
          "evaluation": 3, "training": 4, "cli": 5}


def modules() -> dict[str, Path]:
    found = {}
    for f in PACKAGE.rglob("*.py"):
        parts = ["byol", *f.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = f
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the byol modules it imports, at the top or inside functions."""
    mods = modules()
    graph = {}
    for name, path in mods.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("byol")}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("byol"):
                for a in node.names:  # `from byol.data import loader` imports the module byol.data.loader
                    sub = f"{node.module}.{a.name}"
                    targets.add(sub if sub in mods else node.module)
            elif isinstance(node, ast.ImportFrom) and node.level > 0:
                raise AssertionError(f"{path}: relative import; use absolute byol.* imports")
        graph[name] = {t for t in targets if t != name}
    return graph


def layer(module: str) -> int:
    parts = module.split(".")
    return 6 if len(parts) == 1 else LAYERS[parts[1]]


def test_every_module_has_a_layer():
    for name in modules():
        layer(name)


def test_core_imports_nothing_else_from_byol():
    for name, targets in import_graph().items():
        if name.startswith("byol.core"):
            outside = {t for t in targets if not t.startswith("byol.core")}
            assert not outside, f"{name} imports {outside}"


def test_imports_point_down_the_layers():
    for name, targets in import_graph().items():
        for t in targets:
            assert layer(t) <= layer(name), f"{name} (layer {layer(name)}) imports {t} (layer {layer(t)})"


def test_no_circular_imports():
    graph = import_graph()
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for t in sorted(graph.get(node, ())):
            if state.get(t) == 1:
                raise AssertionError("import circle: " + " -> ".join([*path[path.index(t):], t]))
            if t not in state:
                visit(t, [*path, t])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_a_circle_is_found(monkeypatch):
    """The circle check itself: a graph with a loop fails it."""
    monkeypatch.setattr(__import__(__name__), "import_graph", lambda: {"a": {"b"}, "b": {"a"}})
    try:
        test_no_circular_imports()
    except AssertionError as e:
        assert "a -> b -> a" in str(e)
    else:
        raise AssertionError("the circle a -> b -> a was not found")
