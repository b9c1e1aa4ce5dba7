#!/bin/bash
# The fault suite in its large size: the same tests CI runs small (tests/faults.rs), with
# SUPPORTLAKE_FAULT_SCALE=large — 200 SIGKILL cycles under signed webhook load, a larger disk
# filled on tmpfs and on a loop-mounted ext4, a log segment of 2 000 records with 20 damaged
# ones, 300 slow connections, 2 000 bad requests of 1-8 MiB.
#
# usage: benches/faults.sh [OUT]
#   OUT  where to write the figures (default: target dir/faults-large.jsonl); one JSON object
#        per test, as each test prints it (FAULT-FIGURES lines), then a table on stdout.
# Needs root for the mounts (as CI has); elsewhere set SUPPORTLAKE_FAULTS_NO_MOUNT=skip and
# the disk-full tests say SKIPPED instead of failing. Takes about 15 minutes on 2 cores.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/supportlake-target}
out=${1:-$CARGO_TARGET_DIR/faults-large.jsonl}
cd "$here"
# The test build (dev profile, the one CI builds): nothing to rebuild after `cargo test`.
cargo test --no-run --quiet --test faults
started=$(date +%s)
SUPPORTLAKE_FAULT_SCALE=large cargo test --quiet --test faults -- \
    --nocapture --test-threads 1 2>&1 | tee "$out.log" | grep -oE '(FAULT-FIGURES|SKIPPED|test result).*' || true
grep -q 'test result: FAILED' "$out.log" && { echo "a fault test failed; see $out.log" >&2; exit 1; }
grep -o 'FAULT-FIGURES .*' "$out.log" | sed 's/^FAULT-FIGURES //' > "$out"
echo
echo "large fault run: $(( $(date +%s) - started )) s, figures in $out"
python3 - "$out" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    name = r.pop("test")
    print(f"{name:<22} " + ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
EOF
