"""Where the console is and who calls it: `--local` (the offline stack's stack.json: URL, region and the key pair
its gateway accepts), `--stack NAME` (the CloudFormation stack's `AdminApiUrl` output) or `--api-url URL`, with
the caller's credentials from botocore's chain (environment, profile, SSO, instance role) on AWS."""

import json
import os
import re
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError

from cli.client import Endpoint
from cli.exit_codes import ExitCode

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient

# The same variable moves `make local`'s state folder (offline/state.py), so the CLI finds the stack it wrote.
STATE_DIR_VARIABLE = "METERED_AI_OFFLINE_STATE_DIR"
DEFAULT_STATE_DIR = Path(".local")
ADMIN_URL_OUTPUT = "AdminApiUrl"
ADMIN_SUFFIX = "/admin"
# https://<api id>.execute-api.<region>.amazonaws.com/<stage>: the region is in the host name.
EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")


class TargetError(Exception):
    """The CLI cannot say where or as whom to call; `exit_code` is USAGE or NOT_AUTHORIZED."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def state_dir(given: Path | None) -> Path:
    """`--state-dir`, else $METERED_AI_OFFLINE_STATE_DIR, else ./.local (where `make local` writes)."""
    return given or Path(os.environ.get(STATE_DIR_VARIABLE) or DEFAULT_STATE_DIR)


def local_endpoint(folder: Path) -> Endpoint:
    """The running offline stack, as its stack.json describes it."""
    path = folder / "stack.json"
    try:
        info = json.loads(path.read_text())
        keys = info["aws_credentials"]
        return Endpoint(
            api_url=base_url(info["api_url"]),
            region=info["region"],
            credentials=Credentials(keys["access_key_id"], keys["secret_access_key"]),
        )
    except FileNotFoundError:
        raise TargetError(f"no {path}: is `make local` running (or pass --state-dir)?") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise TargetError(f"{path} is not a stack.json of `make local`: {exc!r}") from None


def stack_endpoint(
    stack_name: str,
    session: boto3.Session,
    cloudformation: "CloudFormationClient | None" = None,
    region: str | None = None,
) -> Endpoint:
    """A deployed stack: its `AdminApiUrl` output (DescribeStacks, in --region or the configured region), signed
    for the region the stack is in."""
    try:
        client = cloudformation or session.client("cloudformation", region_name=region)
    except BotoCoreError as exc:  # no region configured anywhere
        raise TargetError(f"stack {stack_name}: {exc} (pass --region)", boto_exit_code(exc)) from None
    try:
        stacks = client.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = ExitCode.NOT_AUTHORIZED if "AccessDenied" in str(error.get("Code")) else ExitCode.USAGE
        raise TargetError(f"stack {stack_name}: {error.get('Message') or exc}", code) from None
    except BotoCoreError as exc:
        raise TargetError(f"stack {stack_name}: {exc}", boto_exit_code(exc)) from None
    outputs = {output["OutputKey"]: output.get("OutputValue", "") for output in stacks[0].get("Outputs", [])}
    if not outputs.get(ADMIN_URL_OUTPUT):
        raise TargetError(f"stack {stack_name} has no {ADMIN_URL_OUTPUT} output: is it this product's stack?")
    return Endpoint(
        api_url=base_url(outputs[ADMIN_URL_OUTPUT]),
        region=client.meta.region_name,
        credentials=session_credentials(session),
    )


def url_endpoint(api_url: str, region: str | None, session: boto3.Session) -> Endpoint:
    """`--api-url`: the region from an execute-api host name, else --region, else botocore's configured one."""
    url = base_url(api_url)
    host = urllib.parse.urlsplit(url).hostname or ""
    found = EXECUTE_API_HOST.match(host)
    chosen = region or (found.group(1) if found else None) or session.region_name
    if not chosen:
        raise TargetError(f"which region signs for {url}? pass --region (or set AWS_REGION)")
    return Endpoint(api_url=url, region=chosen, credentials=session_credentials(session))


def base_url(url: str) -> str:
    """The API's stage URL: ApiUrl, or AdminApiUrl (its /admin is dropped: the CLI's paths start with it)."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TargetError(f"not an http(s) URL: {url!r}")
    path = parts.path.rstrip("/")
    path = path.removesuffix(ADMIN_SUFFIX)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def session_credentials(session: boto3.Session) -> Credentials:
    """The caller's credentials from botocore's chain; NOT_AUTHORIZED when there are none."""
    try:
        credentials: Any = session.get_credentials()
    except BotoCoreError as exc:
        raise TargetError(f"AWS credentials: {exc}", ExitCode.NOT_AUTHORIZED) from None
    if credentials is None:
        raise TargetError(
            "no AWS credentials found (environment, --profile, SSO, instance role): sign in first",
            ExitCode.NOT_AUTHORIZED,
        )
    resolved: Credentials = credentials
    return resolved


def boto_exit_code(exc: BotoCoreError) -> ExitCode:
    """NOT_AUTHORIZED for credential trouble, UNAVAILABLE when AWS did not answer, else USAGE (a bad profile)."""
    name = type(exc).__name__
    if any(word in name for word in ("Credential", "Token", "SSO", "Auth")):
        return ExitCode.NOT_AUTHORIZED
    if "Endpoint" in name or "Connect" in name or "Timeout" in name:
        return ExitCode.UNAVAILABLE
    return ExitCode.USAGE
