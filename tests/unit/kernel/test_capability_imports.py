"""The architecture as the folders show it: capability packages under src/core never import each other, and the
kernel (the rest of src/core) imports none of them. An AST walk, so a lazy import inside a function counts too."""

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[3] / "src" / "core"
CAPABILITIES = ("signup", "ai", "quota", "billing", "admin", "portal")


def imported_modules(path: Path) -> list[str]:
    """Every module `path` imports, at any depth (absolute imports only: the project uses no relative ones)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            if node.module == "core":  # `from core import quota`: the names are the modules
                found.extend(f"core.{alias.name}" for alias in node.names)
            else:
                found.append(node.module or "")
    return found


def capability_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "core" and parts[1] in CAPABILITIES else None


def forbidden_imports(core: Path) -> list[str]:
    """`file: module` for each import that crosses a capability's border."""
    crossings = []
    for path in sorted(core.rglob("*.py")):
        own = capability_of(".".join(("core", *path.relative_to(core).with_suffix("").parts)))
        for module in imported_modules(path):
            target = capability_of(module)
            if target is not None and target != own:
                crossings.append(f"{path.relative_to(core)}: {module}")
    return crossings


def test_the_capabilities_are_packages_of_core() -> None:
    # Given src/core / When its packages are listed / Then each capability is one
    assert {path.name for path in CORE.iterdir() if (path / "__init__.py").exists()} >= set(CAPABILITIES)


def test_no_capability_imports_another_and_the_kernel_imports_none() -> None:
    # Given every module under src/core / When its imports are read / Then none crosses a capability's border
    assert forbidden_imports(CORE) == []


@pytest.mark.parametrize(
    ("where", "bad_import"),
    [
        ("signup/service.py", "from core.quota.alerts import operator_message\n"),
        ("billing/service.py", "def later() -> None:\n    import core.ai.ledger\n"),
        ("periods.py", "from core.signup import service\n"),
    ],
)
def test_the_check_catches_a_crossing(tmp_path: Path, where: str, bad_import: str) -> None:
    # Given a copy of src/core with one import across a border
    copy = tmp_path / "core"
    for path in CORE.rglob("*.py"):
        target = copy / path.relative_to(CORE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    (copy / where).write_text((copy / where).read_text() + "\n" + bad_import)
    # When the check runs / Then it names that import
    assert len(forbidden_imports(copy)) == 1
    assert forbidden_imports(copy)[0].startswith(where)


def test_core_imports_no_http_code() -> None:
    # Given every module under src/core / When its imports are read
    http = [
        f"{path.relative_to(CORE)}: {module}"
        for path in sorted(CORE.rglob("*.py"))
        for module in imported_modules(path)
        if module.startswith(("aws_lambda_powertools.event_handler", "handlers"))
    ]
    # Then none is Powertools' event handler or the HTTP answers (handlers.http_answers)
    assert http == []


def test_no_handler_declares_its_own_exception_handlers() -> None:
    # Given the Lambda handlers / When their code is read
    handlers = CORE.parent / "handlers"
    declaring = [
        path.name
        for path in sorted(handlers.glob("*.py"))
        if path.name != "http_answers.py"
        and any(
            isinstance(node, ast.Attribute) and node.attr == "exception_handler"
            for node in ast.walk(ast.parse(path.read_text()))
        )
    ]
    # Then only handlers.http_answers registers exception handlers (once, for every app it makes)
    assert declaring == []


TABLE_KEY_PREFIXES = ("KEY#", "PERIOD#", "QUOTA#", "ALERT#", "EMAIL#", "PARTNER#", "APIKEY#", "CUSTOMER#", "CONFIRM#")
TABLE_LAYOUTS = {"adapters/metering_items.py", "adapters/partners_table.py"}


def test_each_tables_item_keys_are_spelled_in_one_module() -> None:
    # Given every module under src/core but the two table layouts / When their string literals are read
    spelled = [
        f"{path.relative_to(CORE)}: {node.value}"
        for path in sorted(CORE.rglob("*.py"))
        if str(path.relative_to(CORE)) not in TABLE_LAYOUTS
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(TABLE_KEY_PREFIXES)
    ]
    # Then none spells a partners-table or metering-table key: they use the layout modules' builders
    assert spelled == []


def test_each_handler_imports_one_capability_at_most() -> None:
    # Given the Lambda handlers / When their imports are read
    handlers = CORE.parent / "handlers"
    capabilities = {
        path.name: sorted({capability_of(module) or "" for module in imported_modules(path)} - {""})
        for path in sorted(handlers.glob("*.py"))
    }
    # Then none loads a second capability's code (each function's cold start pays for its own only)
    assert {name: found for name, found in capabilities.items() if len(found) > 1} == {}
