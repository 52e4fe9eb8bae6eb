"""The demo recording in docs/: made by ``streams.demo.record`` from a real ``vigil demo`` run
(never by hand), a valid asciinema v2 cast and its Markdown transcript, linked from the README."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from streams.demo.record import cast_text, run_and_capture, transcript_text

ROOT = Path(__file__).resolve().parents[2]
CAST = ROOT / "docs" / "demo.cast"
TRANSCRIPT = ROOT / "docs" / "demo-recording.md"


def parse_cast(text: str) -> tuple[dict[str, object], list[tuple[float, str]]]:
    """Header and output events of an asciinema v2 cast; fails on anything else."""
    first, *rest = text.splitlines()
    header = json.loads(first)
    assert header["version"] == 2
    assert isinstance(header["width"], int) and isinstance(header["height"], int)
    events: list[tuple[float, str]] = []
    for line in rest:
        at, kind, data = json.loads(line)
        assert kind == "o" and isinstance(at, float | int) and isinstance(data, str)
        assert data.endswith("\r\n")
        events.append((float(at), data[:-2]))
    times = [at for at, _ in events]
    assert times == sorted(times), "event times go backwards"
    return header, events


def test_a_command_is_captured_line_by_line_with_times() -> None:
    script = (
        "import sys,time\nprint('one', flush=True)\ntime.sleep(0.3)\nprint('two', file=sys.stderr)"
    )
    rec = run_and_capture([sys.executable, "-c", script])
    assert rec.exit_code == 0
    header, events = parse_cast(cast_text(rec, "test"))
    assert header["title"] == "test"
    assert [text for _, text in events] == ["one", "two"]  # stderr too, in order
    assert events[1][0] - events[0][0] > 0.2  # the pause is kept
    transcript = transcript_text(rec, "test", "x.cast")
    assert re.search(r"^\+\s*\d+\.\d{3}s  one$", transcript, flags=re.M)


def test_the_committed_recording_comes_from_a_real_demo_run() -> None:
    header, events = parse_cast(CAST.read_text())
    assert str(header["title"]).startswith("vigil demo --duration")
    lines = [text for _, text in events]
    assert any(line.startswith("vigil demo: ready") for line in lines)
    assert any(line.startswith("summary: ") for line in lines)
    revoked = [line for line in lines if " REVOKED " in line]
    assert revoked, "the recording shows no revocation"
    policies = "".join(p.read_text() for p in (ROOT / "policies").glob("*.yaml"))
    for line in revoked:  # each names a rule that exists and the signal that caused it
        match = re.search(r"rule=(\S+) cause=(\S+) \((.+)\) latency_ms=", line)
        assert match, line
        # default-deny: no rule allowed and none denied (README, "What the demo shows")
        assert match[1] == "default-deny" or f"name: {match[1]}" in policies, match[1]
        assert match[2].startswith("signal:") == bool(re.match(r"[a-z-]+ \S+=", match[3])), line
    # The transcript is the same run, line for line.
    transcript = TRANSCRIPT.read_text()
    body = re.search(r"```text\n(.*?)\n```", transcript, flags=re.S)
    assert body is not None
    assert [re.sub(r"^\+\s*\d+\.\d{3}s  ", "", t) for t in body[1].splitlines()] == lines


def test_the_readme_links_the_recording_and_how_to_regenerate_it() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "(docs/demo.cast)" in readme and "(docs/demo-recording.md)" in readme
    assert "python -m streams.demo.record" in readme
