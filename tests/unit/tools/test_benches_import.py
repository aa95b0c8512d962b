"""`make bench` runs every bench/bench_*.py; it is not part of CI, so a bench that no longer imports (a renamed
helper, a moved module) would only be found by the next person running it. Each is imported here, not run."""

import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[3]
BENCHES = sorted(path.stem for path in (PROJECT_ROOT / "bench").glob("bench_*.py"))


@pytest.mark.parametrize("bench", BENCHES)
def test_each_bench_imports(bench: str) -> None:
    imported = subprocess.run(  # noqa: S603 - this interpreter, our own modules
        [sys.executable, "-c", f"import {bench}"],
        cwd=PROJECT_ROOT / "bench",
        capture_output=True,
        text=True,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr[-2000:]
