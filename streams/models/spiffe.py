"""SPIFFE IDs: the ids of ``workload`` subjects (``workload:spiffe://<trust domain>/<path>``).

Checked against the SPIFFE ID specification (spiffe/spiffe, standards/SPIFFE-ID.md): scheme
``spiffe``, a trust domain of lowercase letters, digits, ``.``, ``-`` and ``_`` (so no port,
no userinfo, no uppercase), a path of ``/``-separated segments of letters, digits, ``.``, ``-``
and ``_`` that are neither empty nor ``.`` nor ``..``, and no query or fragment. A workload is
named by a path: ``spiffe://<trust domain>`` alone names the trust domain, not a workload.
"""

from __future__ import annotations

import re

WORKLOAD_TYPE = "workload"
SCHEME = "spiffe://"
MAX_TRUST_DOMAIN_CHARS = 255
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]+")
_SEGMENT = re.compile(r"[a-zA-Z0-9._-]+")


def spiffe_id_problem(value: str) -> str | None:
    """Why ``value`` is not the SPIFFE ID of a workload, or None when it is."""
    if not value.startswith(SCHEME):
        return f"{value[:80]!r} is not a SPIFFE ID: it must start with {SCHEME!r}"
    rest = value[len(SCHEME) :]
    trust_domain, slash, path = rest.partition("/")
    if not trust_domain:
        return "SPIFFE ID has an empty trust domain"
    if len(trust_domain) > MAX_TRUST_DOMAIN_CHARS:
        return f"SPIFFE ID trust domain is longer than {MAX_TRUST_DOMAIN_CHARS} characters"
    if not _TRUST_DOMAIN.fullmatch(trust_domain):
        return (
            f"SPIFFE ID trust domain {trust_domain[:80]!r} may hold only lowercase letters, "
            "digits, '.', '-' and '_' (no port, userinfo, query or fragment)"
        )
    if not slash or not path:
        return "SPIFFE ID of a workload needs a path (spiffe://<trust domain>/<path>)"
    for segment in path.split("/"):
        if not segment:
            return "SPIFFE ID path has an empty segment ('//' or a trailing '/')"
        if segment in (".", ".."):
            return f"SPIFFE ID path has a {segment!r} segment"
        if not _SEGMENT.fullmatch(segment):
            return (
                f"SPIFFE ID path segment {segment[:80]!r} may hold only letters, digits, '.', "
                "'-' and '_' (no query, fragment or percent-encoding)"
            )
    return None


def check_subject_id(subject_type: str, subject_id: str) -> str:
    """``subject_id`` unchanged; raises ValueError when a workload's id is no SPIFFE ID."""
    if subject_type == WORKLOAD_TYPE:
        problem = spiffe_id_problem(subject_id)
        if problem is not None:
            raise ValueError(problem)
    return subject_id
