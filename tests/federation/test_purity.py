"""federation/ is a pure protocol library: importing it must not pull in the web app stack."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

FEDERATION = Path(__file__).resolve().parents[2] / "federation"
FORBIDDEN = ("flask", "sqlalchemy", "node", "werkzeug", "flask_sqlalchemy")


def test_import_does_not_load_flask_or_sqlalchemy():
    code = (
        "import sys, federation, federation.fetch, federation.httpsig, federation.proofs, federation.keys\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=FEDERATION.parent
    )
    assert out.stdout.strip() == ""


def test_no_module_imports_the_app_stack():
    for path in FEDERATION.glob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
