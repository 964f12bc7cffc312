#!/bin/bash
# quiet.sh CMD...: run CMD with the background evals paused (resumed on any exit), print load/CPU.
P=$(pgrep -f "[h]eadsweep-(ir|g3) eval" | tr '\n' ' ')
trap 'kill -CONT $P 2>/dev/null' EXIT INT TERM
[ -n "$P" ] && kill -STOP $P
sleep 2
echo "# $(date -u +%H:%M:%S) paused: [$P]; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
timeout 270 "$@"
rc=$?
echo "# $(date -u +%H:%M:%S) rc=$rc; load after: $(cut -d' ' -f1-3 /proc/loadavg)"
