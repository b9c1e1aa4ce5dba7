#!/bin/bash
# The rollup refresh after one more day of events, on a copy of a lake with current rollups.
#
# usage: benches/refresh_after_day.sh LAKE DAY_FOLDER [BIN]
#   LAKE        a lake whose rollups are current (e.g. the lifecycle benchmark's year lake);
#               it is not changed: the run works on a hard-linked copy beside it
#   DAY_FOLDER  generated input of the day to add, e.g.
#               supportlake generate --seed 98 --id-offset 98000000 --start 2026-12-07 \
#                 --days 1 --conversations-per-day 6500 --out DAY_FOLDER
#   BIN         the supportlake binary (default: the release build)
# Prints the step timings of the refresh (debug log) and its wall time, CPU and peak RSS.
set -euo pipefail
lake=${1:?usage: refresh_after_day.sh LAKE DAY_FOLDER [BIN]}
day=${2:?usage: refresh_after_day.sh LAKE DAY_FOLDER [BIN]}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${3:-${CARGO_TARGET_DIR:-$here/target}/release/supportlake}
copy="$lake.refresh-copy"
rm -rf "$copy"
cp -al "$lake" "$copy"    # rollup refreshes and ingest write new files and rename, never in place
SUPPORTLAKE_PSEUDONYM_KEY=benchmark-pseudonym-key-0123456789 \
  "$bin" ingest --quiet --no-rollup --lake "$copy" "$day"/agent-log/* "$day"/whatsapp/* "$day"/chatwoot/*
SUPPORTLAKE_LOG=supportlake::query::rollup=debug /usr/bin/time -f "refresh %e s wall, %U s user, %M KB max RSS" \
  "$bin" rollup --grace 0s --lake "$copy" --config "$here/benches/metrics.toml" 2>&1 \
  | grep -E "rollup step|agent status|refreshed|recomputed|refresh "
rm -rf "$copy"
