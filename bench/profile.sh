#!/usr/bin/env bash
# Profile the Vigil worker with py-spy while it drains the realistic signal mix.
#
#   bench/profile.sh            # quick-sized run + profile (≈2 min)
#   bench/profile.sh --full     # full-sized run (+ results in docs/performance.md)
#
# Runs `python -m bench.run --profile`, which attaches two `py-spy record --nonblocking` samplers
# to the worker subprocess during an extra mix drain (py-spy needs ptrace: run as root or with
# CAP_SYS_PTRACE). Outputs: bench/results/profile.svg (flame graph), bench/results/profile.txt
# (collapsed stacks); the top functions by own time are printed and stored in the results JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
size=(--quick)
if [[ "${1:-}" == "--full" ]]; then size=(); shift; fi
exec .venv/bin/python -m bench.run "${size[@]}" --profile "$@"
