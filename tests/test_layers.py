"""The house plan holds: imports in node/ flow one way, nothing imports in a circle, the math in
aggregation/ knows nothing of the node, and every module says what lives in it.

    cli -> sim, audit -> ops, library -> peer -> chain, storage, training -> protocol -> errors, defaults, procs

A package may import from any layer below its own and from itself, never from a layer above or
from a sibling of its own layer. The test reads the sources (ast), so it sees imports inside
functions too, and names each offending line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: The layer of each part of fedledger.node; higher layers may import lower ones.
LAYERS = {
    "cli": 7,
    "sim": 6, "audit": 6,
    "ops": 5, "library": 5,
    "peer": 4,
    "chain": 3, "storage": 3, "training": 3,
    "protocol": 2,
    "errors": 1, "defaults": 1, "procs": 1,
}
MAX_LINES = 600


def _module_name(path: Path, src: Path, package: str) -> str:
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def _imports(path: Path, module: str, is_package: bool):
    """(line, imported module) for every import statement in the file, relative ones resolved."""
    tree = ast.parse(path.read_text())
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                prefix = base[: len(base) - (node.level - 1)]
                target = ".".join(prefix + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:  # `from .. import defaults` imports a module
                yield node.lineno, f"{target}.{alias.name}"


def _part(module: str, package: str) -> str | None:
    """The layer part a module of `package` belongs to (`fedledger.node.peer.loop` -> `peer`)."""
    if not module.startswith(package + "."):
        return None
    return module[len(package) + 1:].split(".")[0]


def check_layers(src: Path, package: str = "fedledger.node", layers: dict[str, int] = LAYERS) -> list[str]:
    """Every import in `src` (the directory installed as `package`) that breaks the layers."""
    known = {_module_name(p, src, package) for p in src.rglob("*.py")}
    problems = []
    for path in sorted(src.rglob("*.py")):
        module = _module_name(path, src, package)
        here = _part(module, package)
        if here is None or here == "__init__":
            continue  # the package's face re-exports by name; it imports nothing at load time
        if here not in layers:
            problems.append(f"{path.relative_to(src.parent)}: `{here}` has no layer in the house plan")
            continue
        seen: set[tuple[int, str]] = set()
        for line, target in _imports(path, module, path.name == "__init__.py"):
            if target not in known:
                continue
            there = _part(target, package)
            if there is None or there == here or there == "__init__" or there not in layers or (line, there) in seen:
                continue
            seen.add((line, there))
            if layers[there] >= layers[here]:
                why = "a sibling" if layers[there] == layers[here] else "a layer above"
                problems.append(f"{path.relative_to(src.parent)}:{line}: {here} (layer {layers[here]}) imports "
                                f"{target}, {why} ({there}, layer {layers[there]})")
    return problems


def check_cycles(src: Path, package: str = "fedledger.node") -> list[str]:
    """Every circle of module imports in `src`, each named by its modules."""
    known = {_module_name(p, src, package): p for p in src.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        if path.name == "__init__.py":
            continue  # package faces only hand names on
        graph[module] = {t for _, t in _imports(path, module, False) if t in known and known[t].name != "__init__.py"
                         and t != module}
    cycles, state = [], {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == "open":
                cycles.append(" -> ".join(stack[stack.index(n):] + [n]))
            elif n not in state:
                visit(n, stack)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    return cycles


def test_imports_in_node_flow_down_the_layers():
    assert check_layers(ROOT / "node") == []


def test_no_module_of_node_imports_another_in_a_circle():
    assert check_cycles(ROOT / "node") == []


def test_aggregation_imports_nothing_from_the_node():
    for path in (ROOT / "aggregation").rglob("*.py"):
        for line, target in _imports(path, _module_name(path, ROOT / "aggregation", "fedledger.aggregation"),
                                     path.name == "__init__.py"):
            assert not target.startswith("fedledger.node"), f"{path.relative_to(ROOT)}:{line} imports {target}"


def test_every_module_says_what_lives_there_and_stays_short():
    for src in (ROOT / "node", ROOT / "aggregation"):
        for path in src.rglob("*.py"):
            text = path.read_text()
            assert ast.get_docstring(ast.parse(text)), f"{path.relative_to(ROOT)} has no module docstring"
            lines = text.count("\n")
            assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (at most {MAX_LINES})"


# --------------------------------------------------------------------------- the checker itself can fail


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    src = tmp_path / "node"
    for name, body in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(f'"""{name}"""\n{body}')
    for d in [src, *[p for p in src.rglob("*") if p.is_dir()]]:
        (d / "__init__.py").exists() or (d / "__init__.py").write_text('"""package"""\n')
    return src


def test_an_upward_import_is_named_with_its_file_and_line(tmp_path):
    src = _tree(tmp_path, {"peer/loop.py": "import os\nfrom ..cli import app\n", "cli/app.py": "from ..peer import loop\n"})
    assert check_layers(src) == [
        "node/peer/loop.py:3: peer (layer 4) imports fedledger.node.cli, a layer above (cli, layer 7)"]


def test_an_import_between_siblings_and_a_function_level_import_are_caught(tmp_path):
    src = _tree(tmp_path, {"sim/run.py": "def f():\n    from ..audit.run import x\n", "audit/run.py": "x = 1\n"})
    problems = check_layers(src)
    assert len(problems) == 1 and "node/sim/run.py:3" in problems[0] and "a sibling" in problems[0]


def test_a_circle_of_imports_is_named(tmp_path):
    src = _tree(tmp_path, {"peer/a.py": "from . import b\n", "peer/b.py": "from .a import x\n"})
    assert check_cycles(src) == ["fedledger.node.peer.a -> fedledger.node.peer.b -> fedledger.node.peer.a"]


@pytest.mark.parametrize("part", sorted(LAYERS))
def test_every_layer_of_the_plan_exists(part):
    assert (ROOT / "node" / part).is_dir() or (ROOT / "node" / f"{part}.py").is_file()
