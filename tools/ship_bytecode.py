"""Compile every function package of a `sam build` to bytecode, so a cold start does not compile it.

`sam build`'s pip workflow unpacks wheels without compiling them, and Lambda's /var/task is read-only, so
without this step every cold start compiles every module it imports (pydantic, botocore, Powertools, ours):
about 1 s of CPU per function (bench/bench_cold_imports.py prints both figures). The bytecode is checked by
nothing at run time (`unchecked-hash`): a deployed package never changes, so there is nothing to check
against, and a stale .pyc cannot arise. It must be compiled by the runtime's Python version (3.12); any
other version's bytecode would be ignored and compiled again.

    python -m tools.ship_bytecode .aws-sam/build
"""

import argparse
import compileall
import py_compile
import sys
from pathlib import Path

RUNTIME_VERSION = (3, 12)  # template.yaml: Runtime python3.12


def ship_bytecode(package: Path) -> None:
    """Compile every .py under `package` in place (its __pycache__ folders); SystemExit if any fails."""
    if sys.version_info[:2] != RUNTIME_VERSION:
        raise SystemExit(f"compile with Python {RUNTIME_VERSION[0]}.{RUNTIME_VERSION[1]}, the functions' runtime")
    compiled = compileall.compile_dir(
        package,
        quiet=1,
        workers=0,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    if not compiled:
        raise SystemExit(f"some modules under {package} did not compile (listed above)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("build_dir", type=Path, help="sam build's output folder (.aws-sam/build)")
    args = parser.parse_args()
    if not args.build_dir.is_dir():
        raise SystemExit(f"{args.build_dir} is not a folder: run sam build first")
    ship_bytecode(args.build_dir)


if __name__ == "__main__":
    main()
