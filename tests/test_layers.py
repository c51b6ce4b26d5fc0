"""The two packages' layering (docs/design.md, "Layout"): fesa_fairseq is what fairseq loads and imports nothing of the
application; fesa is the application on top of it; no circle between folders; the command line's own modules import
torch, fairseq and the plugin only inside the handlers that run."""

import ast
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import fesa_fairseq

ROOT = Path(fesa_fairseq.__file__).resolve().parent.parent
PACKAGES = ("fesa_fairseq", "fesa")
TORCH_FREE = ("fesa/__init__.py", "fesa/errors.py", "fesa/options.py", "fesa/stop.py")  # and fesa/cli/*.py, at their top


def modules() -> Dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, anywhere: bool = True) -> Iterator[str]:
    """Every module name an import statement of the file names (inside functions too, unless ``anywhere`` is False)."""
    tree = ast.parse(path.read_text())
    nodes = ast.walk(tree) if anywhere else iter(tree.body)
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def folder_edges(found: Dict[str, Path]) -> Dict[str, Set[str]]:
    """Folder -> folders its modules import. A package's __init__ importing its own subpackages (the plugin registering
    its tasks, models and criterions with fairseq) is the folder holding its parts, not an arrow."""
    edges: Dict[str, Set[str]] = defaultdict(set)
    for name, path in found.items():
        here = path.parent.relative_to(ROOT).as_posix()
        for target in imports(path):
            if target not in found:
                continue
            there = found[target].parent.relative_to(ROOT).as_posix()
            own_part = path.name == "__init__.py" and there.startswith(here + "/")
            if there != here and not own_part:
                edges[here].add(there)
    return edges


def circles(edges: Dict[str, Set[str]]) -> List[Tuple[str, ...]]:
    state: Dict[str, int] = {}
    found: List[Tuple[str, ...]] = []

    def visit(node: str, path: List[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                found.append(tuple(path[path.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


def test_the_plugin_imports_nothing_of_the_application():
    found = modules()
    back = [
        f"{path.relative_to(ROOT)} imports {target}"
        for name, path in found.items()
        if name.split(".")[0] == "fesa_fairseq"
        for target in imports(path)
        if target.split(".")[0] == "fesa"
    ]
    assert not back, back


def test_no_circle_between_folders():
    edges = folder_edges(modules())
    assert "fesa/pipeline" in edges["fesa/cli"] and "fesa_fairseq/data" in edges["fesa_fairseq/tasks"]  # the graph is read
    assert not circles(edges), circles(edges)


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [("a", "b", "c", "a")]


def test_the_command_line_imports_the_plugin_only_when_a_command_runs():
    """fesa --help answers without torch (test_registration runs it); here, by reading the imports of what it loads."""
    heavy = ("fesa_fairseq", "torch", "fairseq", "numpy")
    files = [ROOT / name for name in TORCH_FREE] + sorted((ROOT / "fesa" / "cli").glob("*.py"))
    wrong = [
        f"{path.relative_to(ROOT)} imports {target} at its top"
        for path in files
        for target in imports(path, anywhere=False)
        if target.split(".")[0] in heavy or (target.startswith("fesa.") and target.split(".")[1] not in ("errors", "options", "stop", "cli"))
    ]
    assert not wrong, wrong
