#!/bin/bash
# Dashboard pages over a year and over a week, loaded right after a rollup refresh: what a
# manager sees on a lake that ingests all day (every flush is followed by a refresh, and a
# refresh opens a new query session).
#
# usage: benches/pages_after_refresh.sh LAKE [ROUNDS] [BIN]
#   LAKE    a lake whose rollups are current (e.g. the lifecycle benchmark's year lake,
#           365 days ending yesterday); it is not changed: the run serves a hard-linked copy
#   ROUNDS  how many times to post a new conversation and time the pages after the refresh
#           that follows (default 4)
#   BIN     the supportlake binary (default: the release build)
# Prints seconds per page load (curl's time_total): the first loads, then per round the
# whole-year overview and the 7-day overview, each the first load after the refresh, and the
# year again (from memory).
set -euo pipefail
lake=${1:?usage: pages_after_refresh.sh LAKE [ROUNDS] [BIN]}
rounds=${2:-4}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${3:-${CARGO_TARGET_DIR:-$here/target}/release/supportlake}
copy="$lake.pages-copy"
port=${PORT:-8092}
rm -rf "$copy"
cp -al "$lake" "$copy"    # refreshes, flushes and the WAL write new files and rename, never in place
SUPPORTLAKE_PSEUDONYM_KEY=benchmark-pseudonym-key-0123456789 SUPPORTLAKE_TOKENS= \
  "$bin" serve --lake "$copy" --config "$here/benches/metrics.toml" \
  --listen "127.0.0.1:$port" --compact-interval 0s > "$copy.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$copy" "$copy.log"' EXIT
refreshes() { curl -s "localhost:$port/metrics" | awk '/^supportlake_rollup_refreshes_total/{print $2}'; }
for _ in $(seq 1200); do
  n=$(refreshes || true)
  [ -n "$n" ] && [ "$n" -ge 1 ] && break
  sleep 0.5
done
t() { curl -s -o /dev/null -w "%{time_total}" "http://127.0.0.1:$port$1"; }
year="/dashboards/overview?from=$(date -u -d '365 days ago' +%Y-%m-%d)"
week="/dashboards/overview"
echo "first loads: year $(t "$year") (again $(t "$year")); week $(t "$week") (again $(t "$week"))"
for r in $(seq "$rounds"); do
  now=$(date -u +%Y-%m-%dT%H:%M:%S)
  n=$(refreshes)
  curl -s -o /dev/null -X POST "http://127.0.0.1:$port/ingest/events" --data-binary "$(printf \
    '{"id":"o-b%s","ts":"%sZ","type":"conversation.opened","conversation_id":"bench-%s","team":"billing"}\n{"id":"q-b%s","ts":"%sZ","type":"conversation.queued","conversation_id":"bench-%s","team":"billing"}\n' \
    "$r" "$now" "$r" "$r" "$now" "$r")"
  for _ in $(seq 600); do [ "$(refreshes)" -ge $((n + 1)) ] && break; sleep 0.2; done
  y=$(t "$year"); w=$(t "$week"); again=$(t "$year")
  echo "round $r, first loads after the refresh: year $y, week $w; year again $again"
done
curl -s "localhost:$port/metrics" | grep -E "^supportlake_query_(kept_rows_reused|cache_hits)_total|^supportlake_queries_total"
