"""tools/ship_bytecode.py: what `make build` does to each function package after `sam build`."""

import subprocess
import sys
from pathlib import Path

import pytest

from tools.ship_bytecode import ship_bytecode

UNCHECKED_HASH_FLAGS = 0b01  # PEP 552: hash-based, check_source off


def test_every_module_gets_bytecode_that_the_runtime_uses_without_checking_the_source(tmp_path: Path) -> None:
    # Given a function package as sam build unpacks it: sources only
    package = tmp_path / "SignupFunction"
    (package / "handlers").mkdir(parents=True)
    (package / "handlers" / "__init__.py").write_text("")
    (package / "handlers" / "signup.py").write_text("ANSWER = 'compiled'\n")

    # When it is compiled for shipping
    ship_bytecode(package)

    # Then each module has bytecode for this Python, flagged as unchecked hash-based (PEP 552)
    cache_tag = sys.implementation.cache_tag
    pyc = package / "handlers" / "__pycache__" / f"signup.{cache_tag}.pyc"
    assert int.from_bytes(pyc.read_bytes()[4:8], "little") == UNCHECKED_HASH_FLAGS
    # And a read-only /var/task imports it as compiled: a later edit of the source is not even looked at
    (package / "handlers" / "signup.py").write_text("ANSWER = 'recompiled'\n")
    imported = subprocess.run(
        [sys.executable, "-c", "import handlers.signup as m; print(m.ANSWER)"],
        cwd=package,
        env={"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(package)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.strip() == "compiled"


def test_a_module_that_does_not_compile_fails_the_build(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("def (:\n")

    with pytest.raises(SystemExit, match="did not compile"):
        ship_bytecode(tmp_path)
