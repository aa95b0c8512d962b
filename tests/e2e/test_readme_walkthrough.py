"""The README's walkthrough, pasted as written: every block marked `<!-- readme-walkthrough -->` runs, in order,
in one bash session against a stack started as `make local` starts it (the template's defaults)."""

import ast
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import PROJECT_ROOT, RunningStack, start_offline

pytestmark = pytest.mark.e2e

MARKER = "<!-- readme-walkthrough -->"
BLOCK = re.compile(re.escape(MARKER) + r"\s*```bash\n(.*?)```", re.S)


def walkthrough_blocks() -> list[str]:
    return BLOCK.findall((PROJECT_ROOT / "README.md").read_text())


def run_as_reader(script: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """`script` in bash, in the reader's project folder, with no AWS settings of this machine's."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    environment["METERED_AI_OFFLINE_STATE_DIR"] = str(folder / ".local")
    return subprocess.run(  # noqa: S603 - our own docs, in a shell as a reader pastes them
        ["/bin/bash", "-c", script],
        cwd=folder,
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.fixture(scope="module")
def reader_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, RunningStack]]:
    # A project folder as a reader has it: .venv, and .local/ written by a running `make local`.
    folder = tmp_path_factory.mktemp("reader")
    (folder / ".venv").symlink_to(sys.prefix)  # the venv running these tests: `make install`'s, with the project in it
    stack = start_offline(folder / ".local")
    try:
        yield folder, stack
    finally:
        stack.stop()


def test_every_bash_block_that_calls_the_api_is_part_of_the_walkthrough() -> None:
    # Given the README / Then a block that uses the walkthrough's variables is one the walkthrough test runs
    text = (PROJECT_ROOT / "README.md").read_text()
    unmarked = [
        block
        for block in re.findall(r"```bash\n(.*?)```", text, re.S)
        if ("$API_URL" in block or "$API_KEY" in block or "$PARTNER_ID" in block) and block not in walkthrough_blocks()
    ]
    assert unmarked == []
    assert len(walkthrough_blocks()) >= 5


def test_the_readme_walkthrough_pastes_and_runs_as_written(reader_folder: tuple[Path, RunningStack]) -> None:
    folder, stack = reader_folder
    script = "set -euo pipefail\n" + "\n".join(walkthrough_blocks())

    # When the blocks run one after another in one shell
    done = run_as_reader(script, folder)

    # Then each step gave the answer the README describes
    output = done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"partner p_\S+, key shown once: \S{20,}", output)
    assert '"object": "list"' in output or '"object":"list"' in output
    assert "chat.completion" in output
    assert "403 without a key" in output
    assert re.search(r'"partner_id":\s*"p_', output), "the Signup API section's own signup answered 201"
    assert "403 after the cancellation" in output
    # The operator console's blocks: curl --aws-sigv4 with stack.json's credentials is let in, unsigned is not
    assert re.search(r'"partners":\s*\[\{"partner_id"', output), "a signed GET /admin/partners answered"
    assert re.search(r'"partner":\s*\{"partner_id":\s*"p_', output), "a signed GET /admin/partners/{id} answered"
    assert "403 unsigned" in output
    assert re.search(r'^"partner_id","name","email","tier","quota_period"', output, re.M), "the CSV usage export"
    assert re.search(r'"quota_periods":\s*\["MONTH"\]', output), "the JSON usage export of the month"
    assert re.search(r'"imported":\s*\[\{"row":\s*1', output), "the key import's good row"
    assert re.search(r'"code":\s*"invalid_key"', output), "the key import's bad row"
    for status in ("SUSPENDED", "DISABLED", "REVOKED"):  # suspend, resume (billing had cancelled it), revoke
        assert re.search(r'"status":\s*"' + status + '"', output), status
    assert re.search(r'"tier":\s*"enterprise",\s*"status":\s*"ACTIVE"', output), "the operator's tier change"
    # The Operator CLI's block: `metered-ai --local` lists every page and exits 4 for an unknown partner
    assert re.search(r"\d+ partners in all", output)
    assert "exit 4 for an unknown partner" in output
    assert re.search(r'"action":\s*"extension",', output), "the operator's usage extension"
    assert re.search(r"p_\S+: tier applied, now REVOKED on pro", output), "the CLI's tier change"
    assert re.search(r"[1-9]\d* usage rows exported", output)
    reissued = re.search(r"new API key \(shown once, store it now\):\n(\S+)\n", output)
    assert reissued, "the CLI re-issued the revoked partner's key"
    # And the key the reader was shown is in no log of the stack
    api_key = re.search(r"key shown once: (\S+)", output).group(1)  # type: ignore[union-attr]
    for log in (stack.log, folder / ".local" / "functions.log"):
        if log.exists():
            assert api_key not in log.read_text(errors="replace")
            assert reissued.group(1) not in log.read_text(errors="replace")
    assert reissued.group(1) not in done.stderr


def test_stack_json_has_exactly_the_keys_docs_offline_md_lists(reader_folder: tuple[Path, RunningStack]) -> None:
    # Given the table of stack.json's keys in docs/offline.md
    text = (PROJECT_ROOT / "docs" / "offline.md").read_text()
    table = text[text.index("It writes `.local/stack.json`") : text.index("Point any AWS SDK")]
    documented = {
        key for row in table.splitlines() if row.startswith("| `") for key in re.findall(r"`(\w+)`", row.split("|")[1])
    }
    # When a stack runs / Then its stack.json has those keys, no more and no fewer
    _, stack = reader_folder
    assert documented == set(stack.info)


def test_the_sdk_example_in_docs_offline_md_runs(reader_folder: tuple[Path, RunningStack]) -> None:
    # Given the docs' example of pointing an AWS SDK at the emulator
    text = (PROJECT_ROOT / "docs" / "offline.md").read_text()
    example = next(block for block in re.findall(r"```sh\n(.*?)```", text, re.S) if "boto3" in block)
    folder, _ = reader_folder
    # When it runs from the reader's project folder, with no AWS settings in the environment
    done = run_as_reader(example, folder)
    # Then it lists the stack's usage plans
    assert done.returncode == 0, done.stderr
    assert any(name.endswith("-free") for name in ast.literal_eval(done.stdout))
