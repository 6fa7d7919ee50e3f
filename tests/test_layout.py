"""The dependency rules of design.md, checked on the source."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imports_of(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_connectors_import_no_flask_rq_orm_or_hub() -> None:
    for path, names in imports_of("connectors").items():
        assert not names & {"flask", "rq", "sqlalchemy", "alembic", "hub", "jobs"}, path


def test_schemas_depend_on_nothing_of_ours_but_schemas() -> None:
    for path, names in imports_of("schemas").items():
        assert not names & {"hub", "jobs", "connectors", "flask", "sqlalchemy"}, path


def test_jobs_are_thin_wrappers_over_hub() -> None:
    for path in (ROOT / "jobs").rglob("*.py"):
        tree = ast.parse(path.read_text())
        functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
        assert all(len(f.body) <= 12 for f in functions), path
        assert not imports_of("jobs")[str(path.relative_to(ROOT))] & {"sqlalchemy", "requests", "connectors"}, path


def test_hub_names_no_platform() -> None:
    platforms = ("klaviyo", "attentive", "postscript", "omnisend", "braze", "iterable", "mailchimp", "customerio")
    pattern = re.compile(rf"\b({'|'.join(platforms)})\b")  # connector keys are lower case; typing's Iterable is not
    for path in (ROOT / "hub").rglob("*.py"):
        assert not pattern.search(path.read_text()), path
