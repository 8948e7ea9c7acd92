#!/bin/bash
# Live ASR through the running service (bench/RESULTS_asr.md, "Live ASR in the service"): for each step a fresh
# service (2 workers, SQLite in a fresh state dir, NUQI_ASR_WORKERS=1 each) and one bench/load.py level of CALLS
# real-time stereo calls, K of them audio-only real-speech calls with asr=on.  "base" runs the code of BASE_DIR
# (e.g. `git archive 4eeae79 | tar -x -C /tmp/base`) the same way, without --asr-calls.
#   DUR=90 CALLS=100 STEPS="k0 k8 base" BASE_DIR=/tmp/base bench/asr_service_ab.sh
#   ASR_WORKERS=2 (recogniser processes per service worker, NUQI_ASR_WORKERS; default 1), TAG=-w2 (label suffix)
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$REPO/.venv/bin/python}
SCRATCH=${SCRATCH:-/tmp/nuqi-asr-ab}
MODELS=${MODELS:-$REPO/data/models}
DUR=${DUR:-90}; CALLS=${CALLS:-100}; TAG=${TAG:-}
mkdir -p "$SCRATCH"
run_server() {  # code dir, port, extra env
  local state="$SCRATCH/state-$2"
  rm -rf "$state" "$SCRATCH/prom"; mkdir -p "$state" "$SCRATCH/prom"; ln -sfn "$MODELS" "$state/models"
  (cd "$1"; env $3 PYTHONPATH="$1" PROMETHEUS_MULTIPROC_DIR="$SCRATCH/prom" NUQI_STATE_DIR="$state" NUQI_ACCESS_LOG=false \
     "$PY" -m app.cli serve --port "$2" --workers 2 > "$SCRATCH/server-$2.log" 2>&1 & echo $! > "$SCRATCH/server-$2.pid")
  for _ in $(seq 90); do curl -sf "localhost:$2/readyz" > /dev/null && break; sleep 1; done
}
stop_server() { kill "$(cat "$SCRATCH/server-$1.pid")"; sleep 5; }
level() {  # port, label, load.py args...
  local port=$1 label=$2; shift 2
  echo "=== $label $(date -u +%H:%M:%S) $(uptime | sed 's/.*load/load/') $(cd "$REPO" && "$PY" bench/host_probe.py)"
  (cd "$REPO" && PYTHONPATH=. "$PY" bench/load.py --url "http://127.0.0.1:$port" --calls "$CALLS" --duration "$DUR" \
     --ramp 10 --out "$SCRATCH/ab-$label.json" "$@" 2>&1 | grep -v '^  t=\|^{"calls\|^$\|^knee\|^| calls\|^|---')
  echo "=== end $label $(date -u +%H:%M:%S) $(uptime | sed 's/.*load/load/') $(cd "$REPO" && "$PY" bench/host_probe.py)"
}
for step in ${STEPS:-k0 k8}; do
  case $step in
    base) run_server "$BASE_DIR" 8732 ""; level 8732 "base$TAG"; stop_server 8732;;
    k*) K=${step#k}; run_server "$REPO" 8731 "NUQI_ASR_WORKERS=${ASR_WORKERS:-1}"; level 8731 "k$K$TAG" --asr-calls "$K"; stop_server 8731;;
  esac
done
