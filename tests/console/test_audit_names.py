"""Every audit entry the product writes is readable on the audit page and in its export, in Chinese and English:
the actions and the names in their details are found in the code that writes them (every call of an audit writer,
read from the source), and each must have its text (`audit.<action>`, `audit_detail.<key>`); values the code
writes in English (who ran a command, a time) are said in each language."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from console import texts
from console.rendering import Names
from handlers.city import load_city_config

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("bot", "console", "storage", "nlp", "handlers")
WRITERS = {("audit", "record"): (2, 3), ("audit", "record_many"): (2, None), ("accounts", "record"): (1, 2),
           (None, "audit_command"): (0, 1), (None, "_audit"): (1, 2)}
"""The audit log's writers (`storage.audit` and the wrappers of the console, the command line and the model
commands) and where each takes the action and the detail (which may be given as `detail=` too)."""
SESSION_DETAIL = ("via", "api_token", "bulk", "selection")
"""Items `storage.audit.record` adds from the session (who ran a command, the API token, the bulk action)."""


def _writer(call: ast.Call) -> tuple[int, int | None] | None:
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return WRITERS.get((func.value.id, func.attr))
    if isinstance(func, ast.Name):
        return WRITERS.get((None, func.id))
    return None


def _functions(tree: ast.AST) -> Iterator[tuple[list[ast.AST], ast.Call]]:
    """Each call in `tree` with the functions it is in, innermost last."""
    def walk(node: ast.AST, enclosing: list[ast.AST]) -> Iterator[tuple[list[ast.AST], ast.Call]]:
        if isinstance(node, ast.Call):
            yield enclosing, node
        inner = [*enclosing, node] if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else enclosing
        for child in ast.iter_child_nodes(node):
            yield from walk(child, inner)

    yield from walk(tree, [])


def _assigned(function: ast.AST, name: str) -> list[ast.expr]:
    """What `name` is set to in `function`: its assignments, and the values of `name["key"] = …` as a dict."""
    values: list[ast.expr] = []
    for node in ast.walk(function):
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and target.id == name:
                    values.append(node.value)
                elif (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name)
                      and target.value.id == name and isinstance(target.slice, ast.Constant)):
                    values.append(ast.Dict(keys=[target.slice], values=[node.value]))
    return values


def _parameters(functions: list[ast.AST]) -> set[str]:
    return {arg.arg for function in functions if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
            for arg in function.args.args + function.args.kwonlyargs}


def _strings(node: ast.expr, function: ast.AST, where: str) -> set[str]:
    """The strings `node` can be: a literal, either side of `a if c else b`, or a name set to such in the function."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _strings(node.body, function, where) | _strings(node.orelse, function, where)
    if isinstance(node, ast.Name) and (values := _assigned(function, node.id)):
        return set().union(*(_strings(value, function, where) for value in values))
    raise AssertionError(f"{where}: the audit action {ast.unparse(node)} is not a literal (write the name out, so "
                         "that this test finds it and its texts)")


def _keys(node: ast.expr, function: ast.AST, where: str) -> set[str]:
    """The names of a detail: the keys of a dict literal (with what it unpacks), or of a name set to one."""
    if isinstance(node, ast.Dict):
        keys: set[str] = set()
        for key, value in zip(node.keys, node.values, strict=True):
            keys |= _keys(value, function, where) if key is None else {ast.literal_eval(key)}
        return keys
    if isinstance(node, ast.IfExp):
        return _keys(node.body, function, where) | _keys(node.orelse, function, where)
    if isinstance(node, ast.Name) and (values := _assigned(function, node.id)):
        return set().union(*(_keys(value, function, where) for value in values))
    raise AssertionError(f"{where}: cannot read the names of the detail {ast.unparse(node)}")


def written() -> dict[str, set[str]]:
    """Every audit action the code writes, with the names of the details it writes with it."""
    found: dict[str, set[str]] = {}
    for room in ROOMS:
        for path in sorted((ROOT / room).rglob("*.py")):
            for functions, call in _functions(ast.parse(path.read_text(encoding="utf-8"))):
                positions = _writer(call)
                if positions is None or len(call.args) <= positions[0]:
                    continue
                position, detail_position = positions
                where = f"{path.relative_to(ROOT)}:{call.lineno}"
                action = call.args[position]
                if isinstance(action, ast.Name) and action.id in _parameters(functions):
                    continue  # a wrapper passing on its caller's action (found at its callers)
                detail = next((keyword.value for keyword in call.keywords if keyword.arg == "detail"),
                              call.args[detail_position] if detail_position and len(call.args) > detail_position
                              else None)
                keys = _keys(detail, functions[-1], where) if detail is not None else set()
                for name in _strings(action, functions[-1], where):
                    found.setdefault(name, set()).update(keys)
    return found


def test_the_scan_finds_the_actions_of_every_kind_of_writer() -> None:
    actions = written()
    assert {"case.view", "case.bulk", "login.throttled", "staff.enable", "staff.disable", "staff.reset_password",
            "model.promote", "db.backup", "case.extension_approved", "case.extension_refused",
            "evidence.file_cleaned", "retention.erase_contact", "audit.export"} <= set(actions)
    assert {"file", "revision"} <= actions["db.restore"]
    assert {"sha256_before", "via"} <= actions["evidence.file_cleaned"]
    assert {"bulk_action", "to", "status", "done", "refused"} <= actions["case.bulk"]


def test_every_action_written_has_a_name_and_every_detail_a_label_in_both_languages() -> None:
    missing_actions = sorted(action for action in written() if not texts.has(f"audit.{action}"))
    named = {key.removeprefix("audit_detail.") for key in texts.keys() if key.startswith("audit_detail.")}
    missing_details = sorted(({key for keys in written().values() for key in keys} | set(SESSION_DETAIL)) - named)
    assert (missing_actions, missing_details) == ([], [])


def test_values_written_in_english_are_said_in_each_language() -> None:
    names = Names(load_city_config(None))
    detail: dict[str, object] = {"via": "command line (ops)", "until": "2026-03-02T08:00:00+00:00",
                                 "due": datetime(2026, 3, 2, 8, 0, tzinfo=UTC).isoformat()}
    assert names.audit_details(detail) == (
        "执行方式：命令行（ops） · 延至：2026-03-02 16:00 · 到期：2026-03-02 16:00",
        "run from: command line (ops) · until: 2026-03-02 16:00 · due: 2026-03-02 16:00")
    assert names.audit_details({"via": "command line"})[0] == "执行方式：命令行"
