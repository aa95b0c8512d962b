"""The README's "Operator CLI" section and the CLI agree: every command it lists exists (its --help answers),
every command the CLI has is listed, and its exit code table is cli.exit_codes.ExitCode."""

import re
from pathlib import Path

import typer.main
from typer.testing import CliRunner

from cli.app import app
from cli.exit_codes import ExitCode

README = Path(__file__).resolve().parents[3] / "README.md"


def section() -> str:
    text = README.read_text()
    start = text.index("## Operator CLI")
    return text[start : text.index("\n## ", start + 1)]


def documented_commands() -> set[str]:
    rows = [line for line in section().splitlines() if line.startswith("| `")]
    return {
        " ".join(command.split()[:2])
        for row in rows
        for command in re.findall(r"`([a-z]+ [a-z-]+)[^`]*`", row.split(" | ")[0])
    }


def cli_commands() -> set[str]:
    group = typer.main.get_group(app)
    return {f"{name} {command}" for name, sub in group.commands.items() for command in sub.commands}  # type: ignore[attr-defined]


def test_every_command_is_in_the_readme_and_every_readme_command_exists() -> None:
    assert documented_commands() == cli_commands()
    for command in sorted(cli_commands()):
        done = CliRunner().invoke(app, [*command.split(), "--help"])
        assert done.exit_code == ExitCode.OK, command


def test_the_readme_exit_codes_are_the_clis() -> None:
    table = section()[section().index("**Exit codes**") :]
    documented = [int(code) for code in re.findall(r"^\| (\d) \|", table, re.MULTILINE)]
    assert documented == [int(code) for code in ExitCode]
