"""Cerbos-compatible policy engine: load and compile a policy bundle once, `check()` many times.

See docs/policies.md for what is supported and the reserved signal attributes.
"""

from .engine import CheckMemo, PolicyEngine
from .model import ActionResult, CheckResult, CompileIssue, OutputEntry, PolicyCompileError

__all__ = [
    "ActionResult",
    "CheckMemo",
    "CheckResult",
    "CompileIssue",
    "OutputEntry",
    "PolicyCompileError",
    "PolicyEngine",
]
