"""Bundle records are checked before anything touches the disk: the digest is a hex digest,
never a path; file paths are plain relative paths; compilation happens in a fresh temporary
directory; signatures are Ed25519 over the canonical content."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives import serialization

from streams.bundles.bundle import Bundle, BundleError, Confirmation, parse_record
from streams.bundles.signing import (
    KeyFileError,
    generate_keypair,
    load_private_key,
    load_public_keys,
    sign,
    verify,
)
from streams.processing.switch import GuardLimits

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return Bundle.from_directory(ROOT / "policies", source="test")


def sentinel(tmp_path: Path) -> Path:
    directory = tmp_path / "precious"
    directory.mkdir()
    (directory / "keep.txt").write_text("do not delete")
    return directory


def assert_untouched(directory: Path) -> None:
    assert (directory / "keep.txt").read_text() == "do not delete"
    assert [p.name for p in directory.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize(
    "digest",
    ["/some/dir", "../..", "sha256:" + "A" * 64, "sha256:" + "0" * 63, "sha256-" + "0" * 64, 7],
)
def test_a_digest_that_is_not_a_hex_digest_is_refused(bundle: Bundle, digest: object) -> None:
    raw = orjson.dumps({**orjson.loads(bundle.to_bytes()), "digest": digest})
    with pytest.raises(BundleError) as err:
        Bundle.from_bytes(raw)
    assert err.value.reason == "digest"


def test_a_path_like_digest_never_touches_that_directory(bundle: Bundle, tmp_path: Path) -> None:
    precious = sentinel(tmp_path)
    workdir = tmp_path / "work"
    forged = Bundle(str(precious), bundle.files)
    with pytest.raises(BundleError):
        forged.compile(workdir)
    assert_untouched(precious)
    with pytest.raises(BundleError):
        parse_record(orjson.dumps({"digest": str(precious), "files": bundle.files}))
    assert_untouched(precious)


def test_compiling_never_removes_a_directory_named_by_the_record(
    bundle: Bundle, tmp_path: Path
) -> None:
    """Compilation uses a fresh mkdtemp directory and removes only that one."""
    workdir = tmp_path / "work"
    named = workdir / bundle.digest.replace(":", "-")
    named.mkdir(parents=True)
    (named / "keep.txt").write_text("do not delete")
    engine = Bundle.from_bytes(bundle.to_bytes()).compile(workdir)
    assert engine.digest == bundle.digest
    assert_untouched(named)
    assert [p.name for p in workdir.iterdir()] == [named.name]  # the temporary dir is gone


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd.yaml",
        "../escape.yaml",
        "a/../../escape.yaml",
        "a//b.yaml",
        "a\\b.yaml",
        "C:/x.yaml",
        ".hidden/x.yaml",
        "",
        "x.yaml/",
        "a/./b.yaml",
    ],
)
def test_unsafe_file_paths_are_refused(bundle: Bundle, path: str, tmp_path: Path) -> None:
    files = {**bundle.files, path: "apiVersion: api.cerbos.dev/v1\n"}
    raw = orjson.dumps({**orjson.loads(bundle.to_bytes()), "files": files})
    with pytest.raises(BundleError) as err:
        Bundle.from_bytes(raw)
    assert err.value.reason == "path"
    with pytest.raises(BundleError):
        Bundle(bundle.digest, files).compile(tmp_path / "work")
    assert not (tmp_path / "escape.yaml").exists()


def test_a_digest_that_does_not_match_the_files_is_refused(bundle: Bundle, tmp_path: Path) -> None:
    other = Bundle("sha256:" + "1" * 64, bundle.files)
    with pytest.raises(BundleError) as err:
        Bundle.from_bytes(other.to_bytes()).compile(tmp_path)
    assert err.value.reason == "digest"


def signed(bundle: Bundle, private_path: Path) -> Bundle:
    kid, signature = sign(load_private_key(private_path), bundle.signed_bytes())
    return Bundle(
        bundle.digest, bundle.files, bundle.pushed_at, bundle.source, None, kid, signature
    )


def test_signatures_verify_and_refuse_with_a_reason(bundle: Bundle, tmp_path: Path) -> None:
    keys = load_public_keys(generate_keypair(tmp_path / "k1"))
    generate_keypair(tmp_path / "k2")
    good = Bundle.from_bytes(signed(bundle, tmp_path / "k1").to_bytes())
    verify(keys, good.signed_bytes(), good.key_id, good.signature)

    def reason(record: Bundle | Confirmation) -> str:
        with pytest.raises(BundleError) as err:
            verify(keys, record.signed_bytes(), record.key_id, record.signature)
        return err.value.reason

    assert reason(Bundle.from_bytes(bundle.to_bytes())) == "unsigned"
    assert reason(signed(bundle, tmp_path / "k2")) == "unknown-key"
    doc = orjson.loads(good.to_bytes())
    doc["files"]["document.yaml"] += "\n# changed after signing\n"
    assert reason(Bundle.from_bytes(orjson.dumps(doc))) == "bad-signature"
    doc = orjson.loads(good.to_bytes())
    doc["source"] = "someone else"
    assert reason(Bundle.from_bytes(orjson.dumps(doc))) == "bad-signature"
    doc = orjson.loads(good.to_bytes())
    doc["signature"] = "not base64!"
    assert reason(Bundle.from_bytes(orjson.dumps(doc))) == "bad-signature"
    # A confirmation cannot reuse a bundle's signature.
    confirm = Confirmation(bundle.digest, 1, "x", good.key_id, good.signature)
    parsed = parse_record(confirm.to_bytes())
    assert isinstance(parsed, Confirmation)
    assert reason(parsed) == "bad-signature"


def test_public_key_files_hold_several_keys_in_three_formats(tmp_path: Path) -> None:
    pubs = [generate_keypair(tmp_path / f"k{i}") for i in range(3)]
    ssh = (
        load_private_key(tmp_path / "k1")
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    raw = (
        load_private_key(tmp_path / "k2")
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    ring = tmp_path / "ring"
    ring.write_bytes(
        pubs[0].read_bytes()
        + b"# rotation: the next key\n"
        + ssh
        + b"\n\n"
        + base64.b64encode(raw)
        + b"\n"
    )
    assert set(load_public_keys(ring)) == {next(iter(load_public_keys(p))) for p in pubs}
    bad = tmp_path / "bad"
    shutil.copy(ring, bad)
    with bad.open("a") as f:
        f.write("garbage\n")
    with pytest.raises(KeyFileError):
        load_public_keys(bad)
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    with pytest.raises(KeyFileError):
        load_public_keys(empty)


def test_the_guard_holds_above_both_the_share_and_the_count() -> None:
    limits = GuardLimits(max_revoke_share=0.10, max_revoke_count=10)
    assert not limits.holds(10, 20)  # at most the count: never held (tiny fleets)
    assert limits.holds(11, 20)
    assert not limits.holds(100, 1000)  # at most the share
    assert limits.holds(101, 1000)
    assert GuardLimits(0.0, 5).holds(6, 10**6)  # share 0: the count alone
    assert GuardLimits(0.5, 0).holds(6, 10)  # count 0: the share alone


def test_keygen_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from streams.commands.policy import policy

    key = tmp_path / "fleet.key"
    run = CliRunner().invoke(policy, ["keygen", str(key)])
    assert run.exit_code == 0, run.output
    (kid,) = load_public_keys(tmp_path / "fleet.key.pub")
    assert kid in run.output
    assert key.stat().st_mode & 0o777 == 0o600
    load_private_key(key)
    again = CliRunner().invoke(policy, ["keygen", str(key)])
    assert again.exit_code != 0 and "not overwritten" in again.output


def test_push_refuses_a_file_name_workers_would_refuse(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from streams.commands.policy import policy

    directory = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", directory)
    (directory / "document.yaml").rename(directory / "document:2.yaml")
    with pytest.raises(BundleError) as err:
        Bundle.from_directory(directory)
    assert err.value.reason == "path"
    run = CliRunner().invoke(policy, ["push", str(directory), "--broker", "127.0.0.1:1"])
    assert run.exit_code == 1 and "nothing published" in run.output


@pytest.mark.parametrize(
    "change",
    [
        {"extra": 1},
        {"pushed_at": "123"},
        {"pushed_at": True},
        {"source": 7},
        {"signature": 1},
        {"files": ["document.yaml"]},
        {"files": {"document.yaml": 1}},
    ],
)
def test_unknown_fields_and_wrong_types_refuse_the_record(
    bundle: Bundle, change: dict[str, object]
) -> None:
    raw = orjson.dumps({**orjson.loads(bundle.to_bytes()), **change})
    with pytest.raises(BundleError) as err:
        parse_record(raw)
    assert err.value.reason == "corrupt"
    confirm = orjson.loads(Confirmation(bundle.digest, 1, "x").to_bytes())
    if "files" not in change:
        with pytest.raises(BundleError):
            parse_record(orjson.dumps({**confirm, **change}))


def test_records_round_trip(bundle: Bundle) -> None:
    parsed = parse_record(bundle.to_bytes())
    assert parsed == Bundle(bundle.digest, bundle.files, bundle.pushed_at, bundle.source)
    confirm = Confirmation(bundle.digest, 5, "ops", "k", "s")
    assert parse_record(confirm.to_bytes()) == confirm


def test_a_signed_confirmation_verifies_and_a_changed_one_does_not(
    bundle: Bundle, tmp_path: Path
) -> None:
    keys = load_public_keys(generate_keypair(tmp_path / "k"))
    unsigned = Confirmation(bundle.digest, 5, "ops")
    kid, signature = sign(load_private_key(tmp_path / "k"), unsigned.signed_bytes())
    record = parse_record(Confirmation(bundle.digest, 5, "ops", kid, signature).to_bytes())
    verify(keys, record.signed_bytes(), record.key_id, record.signature)
    other = Confirmation("sha256:" + "2" * 64, 5, "ops", kid, signature)
    with pytest.raises(BundleError) as err:
        verify(keys, other.signed_bytes(), other.key_id, other.signature)
    assert err.value.reason == "bad-signature"
