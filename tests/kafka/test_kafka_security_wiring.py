"""Every Kafka client Vigil builds gets the TLS/SASL settings: a source scan that cannot regress.

A client constructed without ``**<security>.client_kwargs()`` would connect in plaintext and fail
(or worse, talk to a plaintext listener) on a secured cluster, so a new construction site that
forgets them fails here. Helpers that take ``security=`` with a plaintext default must be given
it by every caller in ``streams/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = [ROOT / "streams", ROOT / "bench"]
CLIENTS = {"AIOKafkaConsumer", "AIOKafkaProducer", "AIOKafkaAdminClient", "AIOKafkaClient"}


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _passes_security(call: ast.Call) -> bool:
    return any(kw.arg is None and "client_kwargs" in ast.unparse(kw.value) for kw in call.keywords)


def client_sites(tree: ast.AST, where: str) -> tuple[list[str], list[str]]:
    """(every client construction, those without the security kwargs) as ``where:line``."""
    sites, bad = [], []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        if name in CLIENTS:
            sites.append(f"{where}:{node.lineno}")
            if not _passes_security(node):
                bad.append(f"{where}:{node.lineno} {name}")
        elif name == "App" and isinstance(node.func, ast.Attribute):  # faust.App(...)
            sites.append(f"{where}:{node.lineno}")
            if not any(kw.arg == "broker_credentials" for kw in node.keywords):
                bad.append(f"{where}:{node.lineno} faust.App without broker_credentials")
    return sites, bad


def defaulted_security_callables(trees: list[ast.AST]) -> set[str]:
    """Functions and classes whose ``security`` parameter has a (plaintext) default."""
    found: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                inits = [
                    item
                    for item in node.body
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__"
                ]
                if any(_has_defaulted_security(init) for init in inits):
                    found.add(node.name)
            elif (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and node.name != "__init__"
                and _has_defaulted_security(node)
            ):
                found.add(node.name)
    return found


def _has_defaulted_security(func: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    args = func.args
    positional = [*args.posonlyargs, *args.args]
    with_default = positional[len(positional) - len(args.defaults) :]
    kw_with_default = [a for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d]
    return any(a.arg == "security" for a in [*with_default, *kw_with_default])


def calls_missing_security(tree: ast.AST, names: set[str], where: str) -> list[str]:
    return [
        f"{where}:{node.lineno} {_name(node.func)}(...) without security="
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and _name(node.func) in names
        and not any(kw.arg in ("security", None) for kw in node.keywords)
    ]


def _parse(paths: list[Path]) -> dict[str, ast.AST]:
    return {
        str(p.relative_to(ROOT)): ast.parse(p.read_text(), str(p))
        for base in paths
        for p in sorted(base.rglob("*.py"))
    }


def test_every_kafka_client_gets_the_security_kwargs() -> None:
    sites: list[str] = []
    bad: list[str] = []
    for where, tree in _parse(SCANNED).items():
        s, b = client_sites(tree, where)
        sites += s
        bad += b
    assert not bad, "Kafka clients built without **security.client_kwargs():\n" + "\n".join(bad)
    # the scan sees the clients it guards (runner x3, watcher, publish, admin, produce, tail,
    # demo x2, faust app, bench x3); a scan that finds nothing proves nothing
    assert len(sites) >= 14, sites


def test_every_streams_caller_passes_security_on() -> None:
    trees = _parse([ROOT / "streams"])
    names = defaulted_security_callables(list(trees.values()))
    assert {"ensure_topics", "push_bundle", "BundleWatcher", "RunnerConfig"} <= names
    missing = [m for where, t in trees.items() for m in calls_missing_security(t, names, where)]
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize(
    "source",
    [
        "AIOKafkaProducer(bootstrap_servers=b)",
        "aiokafka.AIOKafkaConsumer(bootstrap_servers=b, **other)",
        "faust.App('x', broker=b)",
    ],
)
def test_the_scan_flags_a_client_without_security(source: str) -> None:
    _, bad = client_sites(ast.parse(source), "x.py")
    assert bad


def test_the_scan_flags_a_caller_that_drops_security() -> None:
    tree = ast.parse(
        "def ensure(b, *, security=PLAINTEXT): ...\n"
        "class W:\n    def __init__(self, security=PLAINTEXT): ...\n"
        "ensure(b)\nW()\nensure(b, security=s)\n"
    )
    names = defaulted_security_callables([tree])
    assert names == {"ensure", "W"}
    assert len(calls_missing_security(tree, names, "x.py")) == 2
