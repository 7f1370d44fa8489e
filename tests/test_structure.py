"""Structure anyone can check: no import cycles in src/mien, small CLI modules, and `import mien`
free of training, evaluation and fairness code (and of torch and scikit-learn)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mien"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """mien modules imported anywhere in a file (functions included), except under TYPE_CHECKING."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _is_type_checking(node):
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {name for name in found if name in modules}


def test_no_import_cycles():
    modules = _modules()
    graph = {name: {d for d in _imports(path, modules) if d != name and not name.startswith(d + ".")}
             for name, path in modules.items()}
    # A package importing its own submodules (mien.cli registering commands) is not a cycle.
    graph = {name: {d for d in deps if not d.startswith(name + ".")} for name, deps in graph.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def walk(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                walk(dep, stack + [dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_cli_modules_are_small():
    sizes = {p.name: len(p.read_text().splitlines()) for p in (PACKAGE / "cli").glob("*.py")}
    assert len(sizes) >= 6 and max(sizes.values()) <= 250, sizes


def test_import_mien_leaves_out_training_evaluation_and_heavy_libraries():
    code = ("import sys, mien, mien.analyzer, mien.video.analyzer, mien.io.writer, mien.accessor\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sklearn', 'ray', 'duckdb', "
            "'matplotlib', 'fastapi') or m.startswith(('mien.train', 'mien.fairness', 'mien.expression.evaluate', "
            "'mien.expression.au_eval', 'mien.cli', 'mien.server')))\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"import mien pulled in: {out}"


def test_runtime_package_has_no_training_code():
    """Training (torch) lives only in mien.train; no runtime module imports torch or mien.train."""
    modules = _modules()
    for name, path in modules.items():
        if name.startswith(("mien.train", "mien.cli.train")):
            continue
        text = path.read_text()
        assert "import torch" not in text, name
        imported = _imports(path, modules)
        assert not {m for m in imported if m.startswith("mien.train")} or name.startswith("mien.cli"), name
