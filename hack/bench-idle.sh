#!/usr/bin/env bash
# bench-idle.sh measures the sidecar at rest: it runs `trackrouter --demo`
# (HAProxy, 4 demo backends, a watched spec file), lets it settle, then
# reports the sidecar's RSS and the CPU it used over an idle window.
# Usage: hack/bench-idle.sh [idle-seconds]   (default 30)
set -euo pipefail
idle=${1:-30}
cd "$(dirname "$0")/.."
go build -o bin/trackrouter ./cmd/trackrouter
dir=$(mktemp -d)
bin/trackrouter --demo --demo-dir "$dir" --metrics-addr 127.0.0.1:19101 >"$dir/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do curl -sf 127.0.0.1:19101/readyz >/dev/null && break; sleep 0.1; done
sleep 2
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
t0=$(ticks); sleep "$idle"; t1=$(ticks)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
echo "sidecar idle over ${idle}s: RSS $((rss / 1024)) MiB, CPU $(( (t1 - t0) * 1000 / hz )) ms ($(awk -v t=$((t1 - t0)) -v hz="$hz" -v s="$idle" 'BEGIN {printf "%.3f", 100 * t / hz / s}')% of one core)"
