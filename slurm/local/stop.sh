#!/usr/bin/env bash
# slurm/local/stop.sh: stop the cluster that start.sh brought up under $SLURM_BASE (by the PIDs in its pid
# files: cancel jobs, then slurmd, slurmctld, munged; TERM, KILL after 10 s). --purge deletes $SLURM_BASE.
SLURM_BASE=${SLURM_BASE:?set SLURM_BASE}
export SLURM_CONF=$SLURM_BASE/etc/slurm.conf
ctld=$(cat "$SLURM_BASE/run/slurmctld.pid" 2>/dev/null || true)
if [ -n "$ctld" ] && kill -0 "$ctld" 2>/dev/null && scancel --user=root 2>/dev/null; then
    for i in $(seq 100); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.1; done
fi
for p in slurmd slurmctld munged; do
    f=$SLURM_BASE/run/$p.pid
    [ -s "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$f"
done
if [ "${1:-}" = "--purge" ]; then rm -rf "$SLURM_BASE"; fi
