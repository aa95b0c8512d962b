"""What a function imports at a cold start: only what it uses (bench/bench_cold_imports.py prints the times).
Each case imports in a fresh interpreter, as Lambda does."""

import json
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def imported_after(code: str) -> set[str]:
    probe = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    run = subprocess.run(  # noqa: S603 - this interpreter, our own snippet
        [sys.executable, "-c", probe], cwd=PROJECT_ROOT / "src", capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(run.stdout))


def test_the_email_validator_is_loaded_only_by_a_function_that_validates_a_signup() -> None:
    # Given the signup models, which the sweep imports too
    # When a function imports them without validating a signup request
    modules = imported_after("import core.signup.models")

    # Then it does not pay email_validator's import (about 50 ms of compiled patterns)
    assert "email_validator" not in modules

    # And when a signup request is validated, the address is checked by email_validator, as EmailStr does
    assert "email_validator" in imported_after(
        "from core.signup.models import SignupRequest\n"
        "SignupRequest.model_validate({'name': 'Dev', 'email': 'Dev@Acme.example'})"
    )
