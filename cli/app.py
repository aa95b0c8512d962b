"""The `metered-ai` commands: `partners list|show|suspend|resume|set-tier`, `keys rotate|revoke|import`,
`usage grant|export`. Each command makes one call (or a few: pages, import batches) through cli.client and shows
the answer as a table, or as the API's JSON with --json. Exit codes: cli.exit_codes."""

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import boto3
import typer
from botocore.exceptions import BotoCoreError
from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cli import render
from cli.client import AdminClient, ApiError, Endpoint, Transport, TransportError
from cli.exit_codes import ExitCode, exit_code_for
from cli.key_import import DEFAULT_BATCH_ROWS, ImportReport, batches
from cli.target import TargetError, boto_exit_code, local_endpoint, stack_endpoint, state_dir, url_endpoint

MAX_GRACE_SECONDS = 7 * 24 * 3600

# pretty_exceptions off: Typer's rich tracebacks can show local variables, and a local may hold a key value.
app = typer.Typer(
    name="metered-ai",
    help="Operate the metered AI API: partners, keys and usage, through the operator console (/admin/*), "
    "SigV4-signed with your AWS credentials.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
partners_app = typer.Typer(help="List, show, suspend, resume partners; change a partner's tier.", no_args_is_help=True)
keys_app = typer.Typer(help="Rotate, re-issue or revoke a partner's key; import keys from CSV.", no_args_is_help=True)
usage_app = typer.Typer(help="Grant a usage extension; export usage for billing.", no_args_is_help=True)
app.add_typer(partners_app, name="partners")
app.add_typer(keys_app, name="keys")
app.add_typer(usage_app, name="usage")


@dataclass
class Wiring:
    """What the CLI talks through; tests pass their own (`obj=` of the runner): a fake transport, a session
    or a stubbed CloudFormation client."""

    transport: Transport | None = None
    session: Callable[[str | None], boto3.Session] = field(default=lambda profile: boto3.Session(profile_name=profile))
    cloudformation: Any = None


@dataclass
class Invocation:
    """The global options of one run."""

    wiring: Wiring
    stack: str | None = None
    api_url: str | None = None
    local: bool = False
    state_dir: Path | None = None
    region: str | None = None
    profile: str | None = None
    json_output: bool = False

    def endpoint(self) -> Endpoint:
        chosen = [name for name, given in (("--stack", self.stack), ("--api-url", self.api_url)) if given]
        if self.local or self.state_dir:
            chosen.append("--local")
        if len(chosen) != 1:
            raise TargetError(
                "say where the API is with one of --local, --stack NAME or --api-url URL"
                + (f" (given: {', '.join(chosen)})" if chosen else "")
            )
        if self.stack:
            return stack_endpoint(self.stack, self.session(), self.wiring.cloudformation, self.region)
        if self.api_url:
            return url_endpoint(self.api_url, self.region, self.session())
        return local_endpoint(state_dir(self.state_dir))

    def session(self) -> boto3.Session:
        try:
            return self.wiring.session(self.profile)
        except BotoCoreError as exc:  # an unknown --profile, a broken config file
            raise TargetError(str(exc), boto_exit_code(exc)) from None


@app.callback()
def main_options(
    ctx: typer.Context,
    *,
    stack: Annotated[str | None, typer.Option(help="A deployed stack's name: its AdminApiUrl output.")] = None,
    api_url: Annotated[str | None, typer.Option(help="The API's URL (ApiUrl or AdminApiUrl output).")] = None,
    local: Annotated[
        bool, typer.Option("--local", help="The running `make local`: .local/stack.json (URL, credentials).")
    ] = False,
    state_dir_option: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            help="--local with this state folder (default: $METERED_AI_OFFLINE_STATE_DIR, else .local)",
            file_okay=False,
        ),
    ] = None,
    region: Annotated[
        str | None,
        typer.Option(help="The region: of --stack, or to sign for with --api-url (default: your AWS config)."),
    ] = None,
    profile: Annotated[str | None, typer.Option(help="AWS profile (botocore's credential chain).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the API's JSON answers, for scripts.")] = False,
) -> None:
    """Where the API is and how to answer: these come before the command."""
    wiring = ctx.obj if isinstance(ctx.obj, Wiring) else Wiring()
    ctx.obj = Invocation(wiring, stack, api_url, local, state_dir_option, region, profile, json_output)


@contextmanager
def console_call(ctx: typer.Context) -> Iterator[AdminClient]:
    """A client for this run's endpoint; any refusal or failure printed (stderr) and turned into its exit code."""
    invocation: Invocation = ctx.obj
    try:
        yield AdminClient(invocation.endpoint(), invocation.wiring.transport)
    except TargetError as exc:
        render.err_console().print(f"error: {exc}", style="red", markup=False)
        raise typer.Exit(exc.exit_code) from None
    except ApiError as exc:
        if invocation.json_output and exc.body is not None:
            render.print_json(exc.body)
        render.err_console().print(render.error(exc))
        raise typer.Exit(exit_code_for(exc.status)) from None
    except TransportError as exc:
        render.err_console().print(f"error: {exc}", style="red", markup=False)
        raise typer.Exit(ExitCode.UNAVAILABLE) from None
    except BotoCoreError as exc:  # credentials that fail to refresh when a request is signed (an expired SSO login)
        render.err_console().print(f"error: {exc}", style="red", markup=False)
        raise typer.Exit(boto_exit_code(exc)) from None


def show(ctx: typer.Context, answer: Any, human: Callable[[Any], None]) -> None:
    invocation: Invocation = ctx.obj
    if invocation.json_output:
        render.print_json(answer)
    else:
        human(answer)


PartnerId = Annotated[str, typer.Argument(help="The partner's id (p_...), as signup answered it.")]
Reason = Annotated[
    str, typer.Option(help="Why (1-500 characters): recorded in the audit trail and sent to the operators.")
]


# --- partners ---------------------------------------------------------------------------------------------------


@partners_app.command("list")
def list_partners(
    ctx: typer.Context,
    *,
    tier: Annotated[str | None, typer.Option(help="Only this tier.")] = None,
    status: Annotated[str | None, typer.Option(help="Only this status (ACTIVE, SUSPENDED, REVOKED, ...).")] = None,
    email: Annotated[str | None, typer.Option(help="Only the partner with this email.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="Partners per page.")] = 50,
    next_token: Annotated[str | None, typer.Option("--next", help="The page after the one that gave this.")] = None,
    every: Annotated[bool, typer.Option("--all", help="Follow `next` to the last page.")] = False,
) -> None:
    """Partners, a page at a time (--all: every page)."""
    filters: dict[str, str | int | None] = {"tier": tier, "status": status, "email": email, "limit": limit}
    with console_call(ctx) as client:
        page = client.list_partners({**filters, "next": next_token})
        while every and page.get("next"):
            following = client.list_partners({**filters, "next": page["next"]})
            page = {**following, "partners": page["partners"] + following["partners"]}

    def human(page: Any) -> None:
        render.out_console().print(render.partners(page))
        if page.get("next"):
            render.err_console().print(f"more: --next {page['next']} (or --all)", markup=False)

    show(ctx, page, human)


@partners_app.command("show")
def show_partner(ctx: typer.Context, partner_id: PartnerId) -> None:
    """One partner, its standing this period and its audit trail."""
    with console_call(ctx) as client:
        detail = client.show_partner(partner_id)
    show(ctx, detail, lambda detail: render.out_console().print(*render.partner_detail(detail)))


def print_action(result: Any) -> None:
    console = render.out_console()
    console.print(render.action(result))


@partners_app.command("suspend")
def suspend(ctx: typer.Context, partner_id: PartnerId, reason: Reason) -> None:
    """Disable the partner's key at once (SUSPENDED) until `resume`."""
    with console_call(ctx) as client:
        show(ctx, client.suspend(partner_id, reason), print_action)


@partners_app.command("resume")
def resume(ctx: typer.Context, partner_id: PartnerId, reason: Reason) -> None:
    """Lift a suspension: the partner gets back the status billing gave it."""
    with console_call(ctx) as client:
        show(ctx, client.resume(partner_id, reason), print_action)


@partners_app.command("set-tier")
def set_tier(
    ctx: typer.Context,
    partner_id: PartnerId,
    tier: Annotated[str, typer.Argument(help="The new tier.")],
    reason: Reason,
) -> None:
    """Move the partner to another tier (its plan), usage carried, as a billing change would."""
    with console_call(ctx) as client:
        show(ctx, client.set_tier(partner_id, tier, reason), print_action)


# --- keys -------------------------------------------------------------------------------------------------------


def new_key_value(answer: Any) -> str | None:
    """The new key's value in a rotation's answer (`api_key`, as signup names it)."""
    value = answer.get("api_key") if isinstance(answer, dict) else None
    return value if isinstance(value, str) else None


@keys_app.command("rotate")
def rotate(
    ctx: typer.Context,
    partner_id: PartnerId,
    reason: Reason,
    grace: Annotated[
        int,
        typer.Option(
            "--grace", min=0, max=MAX_GRACE_SECONDS, help="Seconds the old key keeps working (at most 7 days)."
        ),
    ] = 0,
) -> None:
    """Issue a new key (rotate, or re-issue after a revocation). Its value is printed once, to stdout only."""
    with console_call(ctx) as client:
        answer = client.rotate_key(partner_id, grace, reason)

    def human(answer: Any) -> None:
        print_action(answer)
        retired = answer.get("retired_key") if isinstance(answer, dict) else None
        if isinstance(retired, dict):
            when = "deleted" if retired.get("deleted") else f"works until {retired.get('delete_at')}, then deleted"
            render.out_console().print(f"old key {retired.get('api_key_id')}: {when}", markup=False)
        value = new_key_value(answer)
        # The value goes to stdout alone (plain print: no rich markup, no wrapping), never to stderr.
        print("new API key (shown once, store it now):")
        print(value if value is not None else "(the answer had no key value)")

    show(ctx, answer, human)


@keys_app.command("revoke")
def revoke(ctx: typer.Context, partner_id: PartnerId, reason: Reason) -> None:
    """Delete the partner's key; the partner stays, REVOKED (`keys rotate` re-issues one)."""
    with console_call(ctx) as client:
        show(ctx, client.revoke_key(partner_id, reason), print_action)


@keys_app.command("import")
def import_keys(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help="CSV in API Gateway's import format (key,name,description,enabled,usageplanIds) plus email, tier.",
        ),
    ],
    batch_size: Annotated[
        int, typer.Option(min=1, max=100, help="Rows per request (each well inside API Gateway's 29 s).")
    ] = DEFAULT_BATCH_ROWS,
    reason: Annotated[
        str | None, typer.Option(help="Why (each imported partner's audit entry; default 'imported from CSV').")
    ] = None,
) -> None:
    """Bring partners who already hold keys: one partner per row; refused rows are reported and change nothing."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {file}: {exc}") from None
    total, parts = batches(text, batch_size)
    if total == 0:
        raise typer.BadParameter(f"{file} has no rows below its header")
    report = ImportReport()
    with console_call(ctx) as client, _progress() as progress:
        task = progress.add_task("importing rows", total=total)
        for batch in parts:
            try:
                report.add(batch, client.import_keys(batch.csv_text, reason))
            except ApiError as exc:
                if batch.first_row == 1 or exc.status in (401, 403):
                    raise  # nothing imported yet, or not allowed at all: the command's own error and exit code
                report.add_failed(batch, exc.status, exc.code, exc.message)
            except TransportError as exc:
                if batch.first_row == 1:
                    raise
                report.add_failed(batch, 0, "no_answer", str(exc))
            progress.advance(task, batch.rows)
    show(ctx, report.answer, _print_import)
    if report.refused:
        raise typer.Exit(ExitCode.PARTIAL)


def _print_import(answer: Any) -> None:
    report = ImportReport(answer)
    console = render.out_console()
    if report.imported:
        console.print(render.table(report.imported, _columns(report.imported), title="imported"))
    if report.refused:
        console.print(render.table(report.refused, _columns(report.refused), title="refused (nothing changed)"))
    console.print(f"{len(report.imported)} imported, {len(report.refused)} refused", markup=False)


def _columns(rows: list[Any]) -> list[str]:
    names: dict[str, None] = {}
    for row in rows:
        if isinstance(row, dict):
            names.update(dict.fromkeys(row))
    return list(names)


# --- usage ------------------------------------------------------------------------------------------------------


class ExportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"


@usage_app.command("grant")
def grant(
    ctx: typer.Context,
    partner_id: PartnerId,
    reason: Reason,
    requests: Annotated[int, typer.Option(min=0, help="Extra requests for the current period.")] = 0,
    tokens: Annotated[int, typer.Option(min=0, help="Extra tokens for the current period.")] = 0,
) -> None:
    """A usage extension for the current period only (requests, tokens)."""
    if requests == 0 and tokens == 0:
        raise typer.BadParameter("grant some --requests or --tokens")
    with console_call(ctx) as client:
        show(ctx, client.grant_extension(partner_id, requests, tokens, reason), print_action)


@usage_app.command("export")
def export(
    ctx: typer.Context,
    period: Annotated[str, typer.Option(help="YYYY-MM (a month) or YYYY-MM-DD (a day).")],
    file_format: Annotated[ExportFormat, typer.Option("--format", help="csv or json.")] = ExportFormat.CSV,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", dir_okay=False, help="Write here [default: stdout].")
    ] = None,
) -> None:
    """Usage for billing: one row per partner and period (requests, extensions, tokens by model)."""
    with console_call(ctx) as client, _progress(download=True) as progress:
        task = progress.add_task(f"usage {period}.{file_format.value}", total=None)

        def moved(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        data = client.export_usage(period, file_format.value, moved)
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        output.write_bytes(data)
        render.err_console().print(f"wrote {output} ({len(data)} bytes)", markup=False)


@contextmanager
def _progress(*, download: bool = False) -> Iterator[Progress]:
    """A progress bar on stderr (stdout stays the command's output)."""
    amount = DownloadColumn() if download else MofNCompleteColumn()
    columns = (TextColumn("{task.description}"), BarColumn(), amount, TimeRemainingColumn())
    with Progress(*columns, console=render.err_console(), transient=False) as progress:
        yield progress


def main() -> None:
    """The `metered-ai` console script."""
    app()
