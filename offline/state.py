"""The offline stack's files in its state folder (default `.local/`): the pid lock, `stack.json`, the outbox and
the functions' log."""

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offline.template import PROJECT_ROOT

# METERED_AI_OFFLINE_STATE_DIR moves it (a second checkout, a test that plays a reader's project folder).
DEFAULT_STATE_DIR = Path(os.environ.get("METERED_AI_OFFLINE_STATE_DIR") or PROJECT_ROOT / ".local")


class AlreadyRunning(RuntimeError):
    """Another offline stack holds this state folder or the port."""


class StackNotRunning(RuntimeError):
    """No offline stack has written its stack.json here."""


@dataclass(frozen=True)
class StateDir:
    path: Path = DEFAULT_STATE_DIR

    @property
    def stack_file(self) -> Path:
        return self.path / "stack.json"

    @property
    def pid_file(self) -> Path:
        return self.path / "offline.pid"

    @property
    def outbox(self) -> Path:
        return self.path / "outbox"

    @property
    def functions_log(self) -> Path:
        return self.path / "functions.log"

    def claim(self) -> None:
        """Take the pid lock, or raise AlreadyRunning naming the live process that holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                descriptor = os.open(self.pid_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read_pid(self.pid_file)
                if holder is not None and holder != os.getpid() and _alive(holder):
                    raise AlreadyRunning(self._running_message(holder)) from None
                # A stack that was killed left its lock behind: take it over.
                self.pid_file.unlink(missing_ok=True)
                continue
            with os.fdopen(descriptor, "w") as pid_file:
                pid_file.write(str(os.getpid()))
            return
        raise AlreadyRunning(f"could not take the lock {self.pid_file}")

    def write_stack(self, info: dict[str, Any]) -> None:
        temporary = self.stack_file.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(info, indent=2) + "\n")
        temporary.replace(self.stack_file)  # readers never see half a file

    def release(self) -> None:
        """Remove stack.json and the lock, if they are this process's."""
        if _read_pid(self.pid_file) == os.getpid():
            self.stack_file.unlink(missing_ok=True)
            self.pid_file.unlink(missing_ok=True)

    def _running_message(self, pid: int) -> str:
        url = ""
        with contextlib.suppress(OSError, ValueError, KeyError):
            url = f" at {json.loads(self.stack_file.read_text())['api_url']}"
        return f"an offline stack is already running{url} (pid {pid}); stop it with Ctrl-C first"


def read_stack(state_dir: Path = DEFAULT_STATE_DIR) -> dict[str, Any]:
    """The running stack's stack.json, or StackNotRunning."""
    state = StateDir(state_dir)
    try:
        info: dict[str, Any] = json.loads(state.stack_file.read_text())
    except (OSError, ValueError):
        raise StackNotRunning(
            f"no offline stack is running (no {state.stack_file}); start one with `make local`"
        ) from None
    pid = info.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        raise StackNotRunning(
            f"the offline stack in {state.stack_file} is gone (pid {pid}); start one with `make local`"
        )
    return info


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True
