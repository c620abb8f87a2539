#!/usr/bin/env bash
# bench/copy-rounds.sh: copiers side by side in rounds, for wall time and CPU time.
#
# Usage (root: it mounts loop images):
#   bench/copy-rounds.sh DATASET ROUNDS TOOL...
#
# DATASET is a folder under $MP_BENCH_DIR/data made by bench/copy.sh (small, large, mixed).
# Each TOOL is cpz, fcp or xcp (from bench/.peers, installed by bench/copy.sh), cp (cp -a),
# or the path of an mp binary (run as `mp copy -q`); `TOOL:ARGS` adds arguments (split at
# spaces), e.g. `cp:-L` or `target/release/mp:-L -j 2`. Every round runs each tool once, in the
# order given, each on a fresh ext4 image (no journal, like bench/copy.sh) holding a warm copy
# of the dataset, and measures the wall time and the CPU time of the tool and all its
# processes (`perf stat -e task-clock`). It prints per tool the median and minimum of both.
#
# Why besides bench/copy.sh: this host is shared and its speed drifts by 10-30% within
# minutes. hyperfine runs each tool's series in one block, so a slow patch can fall on one
# tool only; rounds spread it over all tools, and CPU time shows the work done whatever the
# wall clock says. Compare tools within one run only.
set -euo pipefail

if [ $# -lt 3 ]; then
  sed -n '2,12p' "$0"
  exit 2
fi
ds=$1
rounds=$2
shift 2
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS=$ROOT/bench/.peers/bin
DATA=${MP_BENCH_DIR:-/tmp/mp-copy-bench}/data/$ds
[ -d "$DATA" ] || { echo "no dataset at $DATA (run bench/copy.sh first)" >&2; exit 1; }
command -v perf >/dev/null || { echo "needs perf" >&2; exit 1; }
IMG=$(mktemp -u /tmp/copy-rounds.XXXXXX.img)
FS=$(mktemp -d /tmp/copy-rounds.XXXXXX)
PERF_OUT=$(mktemp /tmp/copy-rounds.XXXXXX.perf)
cleanup() {
  mountpoint -q "$FS" && umount "$FS"
  rm -f "$IMG" "$PERF_OUT"
  rmdir "$FS"
}
trap cleanup EXIT

size_mib=$(( $(du -sm "$DATA" | cut -f1) * 3 + 1024 ))
declare -A wall cpu
for _ in $(seq "$rounds"); do
  i=0
  for tool in "$@"; do
    i=$((i + 1))
    mountpoint -q "$FS" && umount "$FS"
    rm -f "$IMG"
    truncate -s "${size_mib}M" "$IMG"
    mkfs.ext4 -q -F -O ^has_journal -i 4096 "$IMG"
    mount -o loop "$IMG" "$FS"
    cp -a "$DATA" "$FS/src"
    sync
    tar -cf - -C "$FS" src | cat >/dev/null
    name=${tool%%:*}
    extra=()
    if [[ $tool == *:* ]]; then read -ra extra <<<"${tool#*:}"; fi
    case $name in
      cpz | fcp) cmd=("$PEERS/$name" "${extra[@]}" "$FS/src" "$FS/dst") ;;
      xcp) cmd=("$PEERS/xcp" -r "${extra[@]}" "$FS/src" "$FS/dst") ;;
      cp) cmd=(cp -a "${extra[@]}" "$FS/src" "$FS/dst") ;;
      *) cmd=("$name" copy -q "${extra[@]}" "$FS/src" "$FS/dst") ;;
    esac
    sync
    t0=$(date +%s%N)
    # A tool that reports errors (`cp -aL` on a dangling link) is still timed.
    perf stat -x, -e task-clock -o "$PERF_OUT" "${cmd[@]}" 2>/dev/null ||
      echo "$tool exited with status $?" >&2
    t1=$(date +%s%N)
    wall[$i]="${wall[$i]:-} $(( (t1 - t0) / 1000000 ))"
    cpu[$i]="${cpu[$i]:-} $(awk -F, '/task-clock/ { printf "%.0f", $1 }' "$PERF_OUT")"
  done
done

echo "$ds, $rounds rounds: wall and CPU milliseconds (median, min; then every round)"
i=0
for tool in "$@"; do
  i=$((i + 1))
  python3 - "$tool" ${wall[$i]} -- ${cpu[$i]} <<'PY'
import statistics, sys
args = sys.argv[1:]
tool, cut = args[0], args.index("--")
wall, cpu = list(map(int, args[1:cut])), list(map(int, args[cut + 1:]))
print(f"{tool:24} wall {statistics.median(wall):6.0f} min {min(wall):6}"
      f" | cpu {statistics.median(cpu):6.0f} min {min(cpu):6} | wall {wall} cpu {cpu}")
PY
done
