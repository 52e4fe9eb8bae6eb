"""bench.restore grows a changelog by copying what a worker wrote; a full run's state holds
device subjects whose grant state (their subscribers) has no signal state beside it."""

from bench.restore import clones


def test_clones_copy_only_subjects_with_signal_state() -> None:
    templates = {
        b"s:user:u1": b"signals-1",
        b"g:user:u1": b"grants-1",
        b"s:user:u2": b"signals-2",
        b"g:device:D-u1": b"subscribers",  # a device subject: grant state only
    }
    out = clones(templates, signal_only=3, grant_subjects=2)
    assert len(out) == 3 + 2 * 2
    values = [o.value for o in out]
    assert values[:3] == [b"signals-2"] * 3  # signal-only subjects copy u2 (u1 holds grants)
    assert values[3:] == [b"signals-1", b"grants-1"] * 2
    assert b"subscribers" not in values
