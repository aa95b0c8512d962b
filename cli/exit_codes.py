"""The exit codes scripts can trust (README, "Operator CLI"; docs/decisions.md)."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    REFUSED = 1  # the API refused the request (4xx other than 403/404): its error code says why
    USAGE = 2  # the command line itself: a bad or missing option, no target, an unreadable file (Click's own 2)
    UNAVAILABLE = 3  # a server error (5xx), a throttled call or no answer at all: worth a retry later
    NOT_FOUND = 4  # 404: no such partner (or route)
    NOT_AUTHORIZED = 5  # 403 (signature refused, no execute-api:Invoke) or no AWS credentials found
    PARTIAL = 6  # keys import: some rows were refused (each reported), the others imported


def exit_code_for(status: int) -> ExitCode:
    """The exit code for an HTTP status the API answered with (>= 400)."""
    if status == 404:
        return ExitCode.NOT_FOUND
    if status in (401, 403):
        return ExitCode.NOT_AUTHORIZED
    if status == 429 or status >= 500:
        return ExitCode.UNAVAILABLE
    return ExitCode.REFUSED
