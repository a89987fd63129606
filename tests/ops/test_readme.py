"""The README documents every environment variable the code reads."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def variables_read_by(path: Path) -> set[str]:
    """First arguments of ``env_*("NAME", ...)`` and ``os.environ.get("NAME")`` calls."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        first = node.args[0]
        if not isinstance(first, ast.Constant) or not isinstance(first.value, str):
            continue
        func = node.func
        is_env_reader = isinstance(func, ast.Name) and func.id.startswith("env_")
        is_environ_get = (
            isinstance(func, ast.Attribute)
            and func.attr == "get"
            and isinstance(func.value, ast.Attribute)
            and func.value.attr == "environ"
        )
        if is_env_reader or is_environ_get:
            names.add(first.value)
    return names


def test_every_environment_variable_is_documented() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", readme))
    sources = [
        REPO_ROOT / "config" / "settings.py",
        *sorted((REPO_ROOT / "invoicing").rglob("*.py")),
        *sorted((REPO_ROOT / "workers").rglob("*.py")),
    ]
    read = set().union(*(variables_read_by(path) for path in sources))
    assert "DATABASE_URL" in read  # the scan works
    assert "DEMO_WEB_PORT" in read
    missing = sorted(read - documented)
    assert missing == [], f"not in the README's configuration: {missing}"
