"""The docs name only what the code has: every ``VIGIL_*`` variable, metric name, ``vigil``
command and flag in README.md and docs/*.md is checked against the settings, the metrics
registry and the CLI, and every setting and metric is documented.

Generic on purpose: the checks read whatever the tree holds, so new settings, metrics and
commands need only their docs, not an edit here. Exceptions are listed with their reason.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import click
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

import streams.metrics  # noqa: F401  (registers every metric)
from streams.cli import vigil
from streams.policy.celcompat import RESERVED
from streams.policy.substitute import UNDEFINED_FIELD_FN
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CONFIGURATION = ROOT / "docs" / "configuration.md"
SETTINGS_PY = ROOT / "streams" / "settings.py"

#: Variables the docs may name that are not settings, with where the code reads them.
NON_SETTING_VARS = {
    "VIGIL_LOG_LEVEL": "streams/cli.py (--log-level)",
    "VIGIL_BUNDLE_SIGN_KEY": "streams/commands/policy_push.py (--sign-key)",
    "VIGIL_SCHEMAS_DIR": "streams/codecs (schema directory)",
}
#: Metric suffixes Prometheus adds to histograms and counters in the exposition.
SAMPLE_SUFFIXES = ("_bucket", "_count", "_sum", "_created")


def doc_texts() -> Iterator[tuple[str, str]]:
    for path in DOCS:
        yield path.relative_to(ROOT).as_posix(), path.read_text()


def setting_env_vars() -> set[str]:
    return {f"VIGIL_{name.upper()}" for name in Settings.model_fields}


# -- environment variables --------------------------------------------------------------------


def test_every_vigil_variable_in_the_docs_exists() -> None:
    known = setting_env_vars() | set(NON_SETTING_VARS)
    code = "".join(p.read_text() for p in (ROOT / "streams").rglob("*.py"))
    for name in NON_SETTING_VARS:
        assert name in code, f"{name} is no longer read by the code: drop it from NON_SETTING_VARS"
    unknown = set()
    for doc, text in doc_texts():
        for match in re.finditer(r"\bVIGIL_[A-Z0-9_]*[A-Z0-9]\b(?![_*])", text):
            if match[0] not in known:
                unknown.add(f"{doc}: {match[0]}")
    assert not unknown, f"documented but not a setting: {sorted(unknown)}"


def test_every_setting_is_documented_in_configuration_md() -> None:
    text = CONFIGURATION.read_text()
    missing = sorted(v for v in setting_env_vars() if f"`{v}`" not in text)
    assert not missing, f"settings missing from docs/configuration.md: {missing}"


# -- metrics ----------------------------------------------------------------------------------


def registered_metrics() -> set[str]:
    """Names of every metric defined in streams/ (as exposed: counters with ``_total``)."""
    names: set[str] = set()
    for collector in list(REGISTRY._collector_to_names):
        if not isinstance(collector, MetricWrapperBase):
            continue
        for metric in collector.describe():
            if not metric.name.startswith("vigil_"):
                continue
            names.add(metric.name + ("_total" if metric.type == "counter" else ""))
    return names


def documented_metric_names(text: str) -> set[str]:
    """``vigil_*`` names in the docs, skipping patterns (``vigil_api_*``) and sample suffixes."""
    found = set()
    for match in re.finditer(r"\bvigil_[a-z0-9_]*[a-z0-9](?![a-z0-9_]*\*)", text):
        name = match[0]
        for suffix in SAMPLE_SUFFIXES:
            if name.endswith(suffix) and name[: -len(suffix)] in registered_metrics():
                name = name[: -len(suffix)]
        found.add(name)
    return found


def test_every_metric_in_the_docs_exists() -> None:
    metrics = registered_metrics()
    assert metrics, "no metrics registered"
    # ``vigil_...`` words that are policy names (derived roles, exports), not metrics
    policy_names = "".join(p.read_text() for p in (ROOT / "policies").rglob("*.yaml"))
    unknown = set()
    for doc, text in doc_texts():
        for name in documented_metric_names(text):
            if name in (
                *RESERVED,
                UNDEFINED_FIELD_FN,
            ):  # Vigil's own CEL helpers (docs/policies.md)
                continue
            if name not in metrics and not re.search(rf"\b{name}\b", policy_names):
                unknown.add(f"{doc}: {name}")
    assert not unknown, f"documented metrics that do not exist: {sorted(unknown)}"


def test_every_metric_is_documented() -> None:
    docs = "".join(text for _, text in doc_texts())
    missing = sorted(m for m in registered_metrics() if not re.search(rf"\b{m}\b", docs))
    assert not missing, f"metrics no doc mentions: {missing}"


# -- commands and flags -----------------------------------------------------------------------


def command_lines(text: str) -> Iterator[str]:
    """Every ``vigil ...`` invocation shown: fenced shell lines and inline code spans."""
    for block in re.findall(r"^```(?:sh|bash|console)?\n(.*?)^```", text, flags=re.S | re.M):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            for part in re.split(r"\||&&|;|\$\(|`", line.split(" #", 1)[0]):
                part = part.strip()
                if re.match(r"(?:\.venv/bin/)?vigil\s", part):
                    yield part
    for span in re.findall(r"(?<!`)`([^`\n]+)`(?!`)", text):
        if re.match(r"vigil\s+[a-z-]", span):
            yield span


def flags_of(command: click.Command) -> set[str]:
    flags = {"--help", "-h"}
    for param in command.params:
        if isinstance(param, click.Option):
            flags.update(param.opts)
            flags.update(param.secondary_opts)
    return flags


def check_invocation(line: str) -> list[str]:
    """Problems with one ``vigil ...`` invocation: an unknown sub-command or flag."""
    try:
        tokens = shlex.split(line, comments=False)
    except ValueError:
        tokens = line.split()
    tokens = tokens[1:]  # "vigil"
    command: click.Command = vigil
    path = ["vigil"]
    allowed = flags_of(vigil)
    while tokens and isinstance(command, click.Group):
        token = tokens[0].strip("[]")
        if token.startswith("-"):
            if token.split("=")[0] in flags_of(command):
                tokens = tokens[1:]
                if "=" not in token and tokens and not tokens[0].startswith("-"):
                    tokens = tokens[1:]  # the option's value
                continue
            break
        sub = command.commands.get(token)
        if sub is None:
            if re.fullmatch(r"[a-z][a-z-]*", token):
                return [f"`{line}`: no command {' '.join(path)} {token}"]
            break
        command = sub
        path.append(token)
        tokens = tokens[1:]
        allowed |= flags_of(command)
    problems = []
    for token in tokens:
        for flag in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", token):
            if token.startswith(("'", '"', "{")):
                continue
            if flag not in allowed:
                problems.append(f"`{line}`: {' '.join(path)} has no option {flag}")
    return problems


def test_every_vigil_command_and_flag_in_the_docs_exists() -> None:
    problems = []
    for doc, text in doc_texts():
        for line in command_lines(text):
            problems.extend(f"{doc}: {p}" for p in check_invocation(line))
    assert not problems, "\n".join(problems)


def test_the_command_table_lists_every_command() -> None:
    text = CONFIGURATION.read_text()
    missing = []
    for name, command in vigil.commands.items():
        subs = command.commands if isinstance(command, click.Group) else {"": command}
        for sub in subs:
            shown = f"vigil {name} {sub}".strip()
            if f"`{shown}" not in text:
                missing.append(shown)
    assert not missing, f"commands missing from docs/configuration.md: {missing}"


def test_the_checker_catches_an_unknown_command_and_flag() -> None:
    assert check_invocation("vigil worker --web-port 1 --no-such-flag")
    assert check_invocation("vigil frobnicate")
    assert check_invocation("vigil policy frobnicate")
    assert not check_invocation("vigil worker --web-port 1 --data-dir d")
    assert not check_invocation("vigil --log-level INFO policy push --dry-run")


# -- record examples ------------------------------------------------------------------------

#: How a ```json example in the docs is recognised as a record of a schema (all words present).
RECORD_MARKERS = {
    "Revocation": ('"revocation_id"',),
    "Decision": ('"decision_id"', '"effect"', '"evaluated_at"'),
    "DeadLetter": ('"reason"', '"received_at"'),
    "GrantEvent": ('"op"', '"grant_id"', '"issued_at"'),
    "Signal": ('"event_id"', '"event_time"', '"attributes"'),
}
#: Fields an example may leave out, with the reason.
MAY_BE_ABSENT = {
    "Decision": {"call_id", "request_id"},  # check API answers only; absent in JSON otherwise
}


def test_record_examples_show_every_field_of_their_schema() -> None:
    import json

    schemas = {
        name: {
            f["name"] for f in json.loads((ROOT / "schemas" / f"{name}.avsc").read_text())["fields"]
        }
        for name in RECORD_MARKERS
    }
    problems = []
    seen = set()
    for doc, text in doc_texts():
        for block in re.findall(r"^```json\n(.*?)^```", text, flags=re.S | re.M):
            for name, markers in RECORD_MARKERS.items():
                if all(m in block for m in markers):
                    seen.add(name)
                    missing = schemas[name] - MAY_BE_ABSENT.get(name, set())
                    missing = {f for f in missing if f'"{f}"' not in block}
                    if missing:
                        problems.append(f"{doc}: {name} example lacks {sorted(missing)}")
                    break  # a Revocation names its decision_id: the first match decides
    assert seen == set(RECORD_MARKERS), f"no example found for {set(RECORD_MARKERS) - seen}"
    assert not problems, "\n".join(problems)


# -- paths ------------------------------------------------------------------------------------

REPO_DIRS = ("streams", "tests", "docs", "deploy", "schemas", "policies", "risk", "bench")


def test_every_repository_path_in_the_docs_exists() -> None:
    """A path of the checkout in backticks or a Markdown link (``streams/x.py``,
    ``deploy/vigil-alerts.yml``, ``policies/*.yaml``, ``tests/x/helpers.name``) names something
    that is there."""
    pattern = rf"(?:`|\]\()((?:{'|'.join(REPO_DIRS)})/[\w./*-]*[\w*/])(?:[`:)#]|\s)"
    missing = set()
    for doc, text in doc_texts():
        base = ROOT if doc == "README.md" else ROOT / "docs"
        for match in re.finditer(pattern, text):
            path = match[1]
            found = any(ROOT.glob(path)) or (ROOT / path).exists()
            if not found and "." in path.rsplit("/", 1)[-1]:  # module.attribute
                found = (ROOT / (path.rsplit(".", 1)[0] + ".py")).exists()
            if not found and doc != "README.md":
                found = any(base.glob(path))  # a link relative to docs/
            if not found:
                missing.add(f"{doc}: {path}")
    assert not missing, f"paths that do not exist: {sorted(missing)}"


def test_every_make_target_in_the_docs_exists() -> None:
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M))
    unknown = set()
    for doc, text in doc_texts():
        for match in re.finditer(r"`make ([a-z][\w-]*)", text):
            if match[1] not in targets:
                unknown.add(f"{doc}: make {match[1]}")
        for block in re.findall(r"^```(?:sh|bash)?\n(.*?)^```", text, flags=re.S | re.M):
            for match in re.finditer(r"^\s*make ([a-z][\w-]*)", block, flags=re.M):
                if match[1] not in targets:
                    unknown.add(f"{doc}: make {match[1]}")
    assert not unknown, f"make targets that do not exist: {sorted(unknown)}"


#: Settings whose documented default is what an unset value means, not the field's value.
DEFAULT_MEANS = {
    "default_policy_version": "unset means the engine's default version, `default`",
    "schema_enforcement": "unset means Cerbos' default, `none`",
    "kafka_ssl_cafile": "unset means the system CAs",
}


def test_documented_defaults_are_the_settings_defaults() -> None:
    row = re.compile(r"^\| `([a-z_]+)`(?:, `[a-z_]+`)? \| `VIGIL_[A-Z0-9_]+`.*? \| (.*?) \|", re.M)
    wrong = []
    for name, shown in row.findall(CONFIGURATION.read_text()):
        field = Settings.model_fields.get(name)
        assert field is not None, f"docs/configuration.md documents no setting {name}"
        if name in DEFAULT_MEANS:
            continue
        value = field.default
        quoted = re.match(r"`([^`]*)`", shown)
        text = quoted[1] if quoted else shown
        if value is None:
            ok = text == "unset"
        elif isinstance(value, bool):
            ok = text == str(value).lower()
        elif isinstance(value, int | float):
            ok = re.fullmatch(r"-?[\d.]+", text) is not None and float(text) == float(value)
        else:
            ok = text == str(value)
        if not ok:
            wrong.append(f"{name}: documented {text!r}, default {value!r}")
    assert not wrong, "\n".join(wrong)


def test_every_command_option_is_documented() -> None:
    """Each option of each command appears in docs/configuration.md in one of its forms
    (``--output`` or ``-o``; ``--create-topics`` or ``--no-create-topics``)."""
    text = CONFIGURATION.read_text()

    def leaves(command: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                yield from leaves(sub, f"{path} {name}")
        else:
            yield path, command

    missing = []
    for path, command in leaves(vigil, "vigil"):
        for param in command.params:
            if not isinstance(param, click.Option) or "--help" in param.opts:
                continue
            forms = [*param.opts, *param.secondary_opts]
            if not any(re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text) for f in forms):
                missing.append(f"{path} {forms[0]}")
    assert not missing, f"options not in docs/configuration.md: {missing}"
