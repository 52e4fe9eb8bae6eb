"""``vigil policy``: tools for policy authors (compile, test, eval) on a Cerbos policy directory.

- ``compile DIR``: compile like ``cerbos compile``; every error as ``file: path: message`` (exit
  1), else a summary, then the test suites under DIR (unless ``--skip-tests``).
- ``test DIR``: run the Cerbos-format test suites (``*_test.yaml``) under DIR.
- ``eval DIR``: CheckResources requests as JSON lines on stdin, Cerbos responses as JSON lines
  on stdout, so tools outside the project can drive the engine like a Cerbos PDP.
- ``plan DIR``: the same for PlanResources requests (query plans).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson

from streams.commands.common import policy_directory, setting_option
from streams.commands.policy_push import confirm, keygen, push, status
from streams.policy.api import (
    RequestError,
    UnsupportedOption,
    build_engine,
    check_resources,
    new_call_id,
    parse_time,
)
from streams.policy.auxdata import (
    NO_KEY_SETS,
    UNVERIFIED,
    AuxDataConfigError,
    AuxDataVerifier,
    fetch_remote_key_sets,
)
from streams.policy.engine import PolicyEngine
from streams.policy.loader import load_directory
from streams.policy.model import PolicyCompileError
from streams.policy.planner import plan_resources
from streams.policy.testsuite import EngineCache, discover_suites, format_human, run_suites

F = TypeVar("F", bound=Callable[..., Any])
INTERNAL = 13  # gRPC INTERNAL: the engine failed on a valid request


def _json_object(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object")
    return parsed


def engine_options(func: F) -> F:
    """Cerbos ``engine.*`` settings shared by every sub-command."""
    for option in reversed(
        [
            click.option(
                "--globals",
                "globals_",
                callback=_json_object,
                metavar="JSON",
                help="Global variables for G/globals, as a JSON object (Cerbos engine.globals).",
            ),
            click.option(
                "--default-policy-version",
                metavar="V",
                default=None,
                help='Policy version for requests without one (default "default").',
            ),
            click.option(
                "--lenient-scope-search",
                is_flag=True,
                help="Fall back to the nearest existing ancestor scope (Cerbos lenientScopes).",
            ),
            click.option(
                "--schema-enforcement",
                type=click.Choice(["none", "warn", "reject"]),
                default=None,
                help="Validate attributes against the policies' schemas (Cerbos schema.enforcement).",
            ),
            click.option(
                "--strict-evaluation",
                is_flag=True,
                help="Strict evaluation (Cerbos --strict-evaluation), if the engine supports it.",
            ),
        ]
    ):
        func = option(func)
    return func


def _options(
    globals_: dict[str, Any] | None,
    default_policy_version: str | None,
    lenient_scope_search: bool,
    strict_evaluation: bool,
    schema_enforcement: str | None = None,
) -> dict[str, Any]:
    return {
        "schema_enforcement": schema_enforcement,
        "globals_": globals_,
        "default_policy_version": default_policy_version,
        "lenient_scope_search": lenient_scope_search,
        "strict_evaluation": strict_evaluation,
    }


def _compile(directory: Path, options: dict[str, Any]) -> PolicyEngine:
    """The engine, or exit 1 after printing every compile error as ``file: path: message``."""
    try:
        return build_engine(directory, **options)
    except UnsupportedOption as exc:
        raise click.UsageError(str(exc)) from None
    except PolicyCompileError as exc:
        for issue in exc.errors:
            loc = f"{issue.file}: {issue.path}" if issue.path else issue.file
            # one error per line; continuation lines of long messages (CEL carets) indented
            message = issue.message.replace("\n", "\n    ")
            click.echo(f"{loc}: {message}")
        click.echo(f"{len(exc.errors)} compile error(s) in {directory}", err=True)
        sys.exit(1)


def _run_tests(
    directory: Path,
    engine: PolicyEngine,
    options: dict[str, Any],
    run: str | None,
    output: str,
    verbose: bool,
) -> bool:
    cache = EngineCache(directory, **options)
    cache.seed(engine)
    report = run_suites(directory, cache, run=run)
    if output == "json":
        click.echo(json.dumps(report.to_json(), indent=2))
    elif not report.suites:
        click.echo("No test suites found" + (f" matching --run {run!r}" if run else ""))
    else:
        click.echo(format_human(report, verbose=verbose))
    return report.ok


_DIR = click.Path(exists=True, file_okay=False, path_type=Path)

_RUN = click.option("--run", metavar="REGEX", help="Run only tests whose name matches REGEX.")
_OUTPUT = click.option(
    "--output",
    "-o",
    type=click.Choice(["human", "json"]),
    default="human",
    show_default=True,
    help="json: Cerbos TestResults JSON (as `cerbos compile --output=json`).",
)
_VERBOSE = click.option("--verbose", "-v", is_flag=True, help="Show evaluation errors of failures.")


@click.group("policy")
def policy() -> None:
    """Compile, test and evaluate Cerbos policies with Vigil's engine."""


@policy.command("compile")
@click.argument("directory", type=_DIR, required=False)
@click.option("--skip-tests", is_flag=True, help="Only compile; do not run the test suites.")
@_RUN
@_OUTPUT
@_VERBOSE
@engine_options
def compile_cmd(
    directory: Path | None,
    skip_tests: bool,
    run: str | None,
    output: str,
    verbose: bool,
    **engine: Any,
) -> None:
    """Compile the policies under DIRECTORY and run its test suites (like `cerbos compile`).

    Exit 1 on any compile error (all are printed, one `file: path: message` per line) or test
    failure. Without DIRECTORY: ./policies, else the checkout's policies/."""
    directory = policy_directory(directory)
    options = _options(**engine)
    eng = _compile(directory, options)
    if output != "json":
        files = load_directory(directory).files
        click.echo(
            f"Compiled {len(files)} policy file(s), {len(eng.policy_keys)} resource "
            f"polic{'y' if len(eng.policy_keys) == 1 else 'ies'} from {directory}"
        )
        click.echo(f"digest {eng.digest}")
        if eng.skipped_files:
            click.echo(f"not policies (ignored): {', '.join(eng.skipped_files)}")
    if skip_tests:
        if output == "json":
            click.echo(json.dumps({"digest": eng.digest, "policies": eng.policy_keys}))
        return
    if output != "json" and not discover_suites(directory):
        return
    if output != "json":
        click.echo("")
    if not _run_tests(directory, eng, options, run, output, verbose):
        sys.exit(1)


@policy.command("test")
@click.argument("directory", type=_DIR, required=False)
@_RUN
@_OUTPUT
@_VERBOSE
@engine_options
def test_cmd(
    directory: Path | None, run: str | None, output: str, verbose: bool, **engine: Any
) -> None:
    """Run the Cerbos-format test suites (`*_test.yaml`) under DIRECTORY.

    A principal/resource/action missing from `expected` must be EFFECT_DENY. Exit 1 on any
    failure, error or compile error. Without DIRECTORY: the default policies (see compile)."""
    directory = policy_directory(directory)
    options = _options(**engine)
    eng = _compile(directory, options)
    if not _run_tests(directory, eng, options, run, output, verbose):
        sys.exit(1)


def _error_line(line_no: int, code: int, message: str) -> bytes:
    return orjson.dumps({"code": code, "message": message, "line": line_no})


NO_SIGNALS_HINT = (
    "note: request {line_no} has no principal.attr.signals; a worker merges the live signals "
    "there, eval does not, so rules that read them see nothing and default deny applies "
    "(docs/policies.md, 'Reserved signal attributes')"
)


def _has_signals(body: Any) -> bool:
    """Whether a CheckResources request carries the reserved ``principal.attr.signals``."""
    principal = body.get("principal") if isinstance(body, dict) else None
    attr = principal.get("attr") if isinstance(principal, dict) else None
    return isinstance(attr, dict) and "signals" in attr


def request_options(func: F) -> F:
    """``--now``, ``--aux-data-config`` and ``--unverified-jwt``: how ``eval`` and ``plan``
    read every request."""
    func = click.option(
        "--unverified-jwt",
        is_flag=True,
        help="Read auxData.jwt tokens WITHOUT verifying their signature (Cerbos "
        "auxData.jwt.disableVerification; testing only).",
    )(func)
    func = setting_option(
        "--aux-data-config",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        help="YAML file with Cerbos' auxData block: key sets that verify auxData.jwt tokens "
        "(docs/configuration.md); unset: a request with a token is refused.",
    )(func)
    return click.option(
        "--now",
        metavar="RFC3339",
        help="Fix now() for every request, and the time tokens are checked at (default: the "
        "clock).",
    )(func)


def _aux_data_verifier(config: Path | None, unverified_jwt: bool) -> AuxDataVerifier:
    if config is not None and unverified_jwt:
        raise click.UsageError("--aux-data-config and --unverified-jwt exclude each other")
    if unverified_jwt:
        return UNVERIFIED
    if config is None:
        return NO_KEY_SETS
    try:
        verifier = AuxDataVerifier.from_file(config)
    except AuxDataConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--aux-data-config") from None
    for problem in fetch_remote_key_sets(verifier):  # fetched once: a run is short
        click.echo(f"warning: --aux-data-config: {problem}; its tokens are refused", err=True)
    return verifier


@policy.command("eval")
@click.argument("directory", type=_DIR, required=False)
@engine_options
@request_options
def eval_cmd(
    directory: Path | None,
    now: str | None,
    aux_data_config: Path | None,
    unverified_jwt: bool,
    **engine: Any,
) -> None:
    """Answer CheckResources requests: one JSON request per stdin line, one response per line.

    Responses are the Cerbos PDP's /api/check/resources JSON. An invalid line gets
    `{"code": 3, "message": REASON, "line": N}` instead and processing continues; the exit code
    is then 1. Blank lines are ignored. Without DIRECTORY: the default policies (see compile).

    A bare request carries no live signals: the policies then see an unknown device, network and
    risk, and default-deny whatever depends on them. Put the reserved attributes Vigil merges in
    (`principal.attr.signals`, see docs/policies.md) into the request to see what a worker sees."""
    aux_data = _aux_data_verifier(aux_data_config, unverified_jwt)
    _serve_lines(directory, now, aux_data, engine, check_resources)


def _serve_lines(
    directory: Path | None,
    now: str | None,
    aux_data: AuxDataVerifier,
    engine: dict[str, Any],
    answer: Callable[..., dict[str, Any]],
) -> None:
    """The stdin/stdout loop shared by ``eval`` and ``plan``: one request per line, one
    response (or error line) per line, exit code 1 if any line failed."""
    eng = _compile(policy_directory(directory), _options(**engine))
    try:
        fixed = parse_time(now) if now else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--now") from None
    out = sys.stdout.buffer
    failed = False
    hinted = False
    for line_no, raw in enumerate(sys.stdin.buffer, start=1):
        if not raw.strip():
            continue
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            reply, failed = _error_line(line_no, 3, f"invalid JSON: {exc}"), True
        else:
            if not hinted and not _has_signals(body):
                hinted = True
                click.echo(NO_SIGNALS_HINT.format(line_no=line_no), err=True)
            try:
                response = answer(eng, body, now=fixed, aux_data=aux_data)
                reply = orjson.dumps(response)
            except RequestError as exc:
                reply, failed = _error_line(line_no, exc.code, exc.message), True
            except Exception as exc:  # an engine failure must not end the stream
                reply = _error_line(line_no, INTERNAL, f"{type(exc).__name__}: {exc}")
                failed = True
        try:
            out.write(reply + b"\n")
            out.flush()  # drivers wait for each answer before sending the next request
        except BrokenPipeError:
            break
    if failed:
        sys.exit(1)


@policy.command("plan")
@click.argument("directory", type=_DIR, required=False)
@engine_options
@request_options
def plan_cmd(
    directory: Path | None,
    now: str | None,
    aux_data_config: Path | None,
    unverified_jwt: bool,
    **engine: Any,
) -> None:
    """Answer PlanResources requests: one JSON request per stdin line, one response per line.

    The twin of `vigil policy eval`: responses are the Cerbos PDP's /api/plan/resources JSON
    (filters over resource attributes, docs/check-api.md "Query plans"). An invalid line, or a
    plan Vigil's planner refuses (code 12, with the reason), gets `{"code", "message", "line"}`
    instead and processing continues; the exit code is then 1. As with eval, the live signals a
    worker folds in are not there unless the request carries `principal.attr.signals`."""
    aux_data = _aux_data_verifier(aux_data_config, unverified_jwt)
    _serve_lines(directory, now, aux_data, engine, _plan)


def _plan(eng: PolicyEngine, body: Any, **kwargs: Any) -> dict[str, Any]:
    return plan_resources(eng, body, call_id=new_call_id(), **kwargs)


policy.add_command(push)
policy.add_command(keygen)
policy.add_command(confirm)
policy.add_command(status)

command: click.Command = policy
