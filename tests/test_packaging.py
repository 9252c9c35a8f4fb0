"""The package folders (and the client's, sdk/python) install under one import name, and no
generic name leaks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import importlib.util, sys
import promptpix
import promptpix.cache, promptpix.gateway, promptpix.generators, promptpix.transforms
import promptpix.client
names = ("cache", "gateway", "generators", "transforms", "client", "sdk")
leaked = [n for n in names if importlib.util.find_spec(n)]
print(",".join(leaked) or "none")
"""


def test_one_import_name_and_no_generic_top_level_package(tmp_path: Path) -> None:
    # Run from an empty directory: the repository's own folders are not on sys.path there.
    run = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "none"
