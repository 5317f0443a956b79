"""The registry's layering: the storage model never reaches the HTTP side, and no module imports form a cycle.

Checked on the source's import statements (including ``TYPE_CHECKING`` ones), so a type-only cycle counts.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..", "berth", "registry")


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    base = os.path.dirname(os.path.dirname(ROOT))
    for dirpath, _dirs, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".py"):
                continue
            path = os.path.join(dirpath, f)
            mod = os.path.relpath(path, base)[:-3].replace(os.sep, ".").removesuffix(".__init__")
            deps: set[str] = set()
            for node in ast.walk(ast.parse(open(path).read())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("berth.registry"):
                    for alias in node.names:
                        sub = f"{node.module}.{alias.name}"
                        is_mod = os.path.exists(os.path.join(base, *sub.split(".")) + ".py")
                        deps.add(sub if is_mod else node.module)
                elif isinstance(node, ast.Import):
                    deps.update(a.name for a in node.names if a.name.startswith("berth.registry"))
                elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "aiohttp":
                    deps.add("aiohttp")
                elif isinstance(node, ast.Import) and any(a.name.split(".")[0] == "aiohttp" for a in node.names):
                    deps.add("aiohttp")
            graph[mod] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(n: str, stack: list[str]) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if m == n.rpartition(".")[0] or m not in graph:
                continue  # a module importing its own package's __init__ is not a cycle worth naming
            if state.get(m) == 1:
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m, stack)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [])
    return found


def test_registry_modules_have_no_import_cycle() -> None:
    graph = _graph()
    assert "berth.registry.model.registry" in graph and "berth.registry.endpoints.app" in graph
    assert _cycles(graph) == []


def test_storage_model_imports_neither_http_nor_endpoints() -> None:
    graph = _graph()
    bad = {m: sorted(d for d in deps if d == "aiohttp" or d.startswith("berth.registry.endpoints"))
           for m, deps in graph.items() if m.startswith("berth.registry.model")}
    assert {m: d for m, d in bad.items() if d} == {}
    # And at run time: GC (and the whole model) loads without aiohttp being imported.
    code = "import sys; import berth.registry.model.gc, berth.registry.model.registry; print('aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
