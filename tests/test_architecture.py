"""The layers of DESIGN §7 hold: import-linter checks the contracts in pyproject.toml
([tool.importlinter]), so a wrong-way import fails the suite instead of waiting for a review."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept() -> None:
    # lint-imports puts its working directory first on sys.path, so this checkout's otp is the one read.
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())",
            "--no-cache",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
