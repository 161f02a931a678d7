"""The arrows point down: the proxy builds on tenancy and its own modules, never on the apps that build on it,
and the hot path loads no DRF. Read from the source (every import, at module level or inside a function), so a
lazy import that dodges a cycle counts too."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ABOVE_THE_PROXY = {"observability", "prompts", "evals"}
API_PACKAGES = {"rest_framework", "drf_spectacular", "django_filters"}


def _sources(package: str) -> Iterator[Path]:
    for path in sorted((ROOT / package).rglob("*.py")):
        if "tests" not in path.relative_to(ROOT).parts and "migrations" not in path.parts:
            yield path


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted module) for every import in the file; relative imports resolved."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            yield node.lineno, base
            for alias in node.names:  # `from proxy import relay` imports proxy.relay
                yield node.lineno, f"{base}.{alias.name}"


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


def test_the_proxy_imports_none_of_the_apps_that_build_on_it():
    upward: dict[str, str] = {}
    for path in _sources("proxy"):
        for line, name in _imports(path):
            if name.split(".")[0] in ABOVE_THE_PROXY:
                upward.setdefault(_where(path, line), name)  # `from a import b`: name the module, a
    listed = [f"{where} imports {name}" for where, name in upward.items()]
    assert listed == [], "proxy/ must not import observability, prompts or evals:\n" + "\n".join(listed)


def test_the_hot_path_loads_no_drf():
    # Follow every import from the proxy's modules through the proxy and tenancy (the floor it stands on).
    files = {_module_name(path): path for package in ("proxy", "tenancy") for path in _sources(package)}
    seen: set[str] = set()
    chain: dict[str, str] = {}
    todo = [name for name in files if name.split(".")[0] == "proxy"]
    found = []
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for line, name in _imports(files[module]):
            if name.split(".")[0] in API_PACKAGES:
                found.append(f"{_where(files[module], line)} imports {name} (reached from {_route(chain, module)})")
            elif name in files and name not in seen:
                chain.setdefault(name, module)
                todo.append(name)
    assert found == [], "the proxy's imports reach the API framework:\n" + "\n".join(found)


def _route(chain: dict[str, str], module: str) -> str:
    route = [module]
    while route[-1] in chain:
        route.append(chain[route[-1]])
    return " <- ".join(route)
