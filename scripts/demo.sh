#!/usr/bin/env bash
# `make demo`: the whole pipeline on this machine, in a few minutes, on its own state (var/demo/).
#
#   1. start the local Kafka broker (scripts/kafka.sh), unless one is running already
#   2. wipe var/demo/ and the demo topic
#   3. produce ~2 days of clean history to files, train the model (jobs/train_model.py)
#   4. start the detect job (zscore + stateful ema, robust and flatline, conf/demo.yaml) in the background,
#      produce live traffic with injected anomalies and malformed records, wait until it caught up
#   5. report: detected vs injected per detector, dead letters, a chart (var/demo/chart.png)
#
# The broker is stopped at the end (also on failure or Ctrl-C) only if this script started it.
# Environment (optional): DEMO_SENSORS (20), DEMO_HISTORY_HOURS (48), DEMO_RATE (1000 records/s),
# DEMO_SECONDS (45), DEMO_ANOMALY_RATE (0.0005), DEMO_BAD_RATE (0.001), KAFKA_PORT (9092).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
CONF=conf/demo.yaml
DEMO=var/demo
LOGS=$DEMO/logs
PORT=${KAFKA_PORT:-9092}
BOOTSTRAP=127.0.0.1:$PORT
TOPIC=$($PY -c "import sys; sys.path.insert(0, 'src'); from spark_anomaly.config import load_config; print(load_config('$CONF').kafka.topic)")
SENSORS=${DEMO_SENSORS:-20}
HOURS=${DEMO_HISTORY_HOURS:-48}
RATE=${DEMO_RATE:-1000}
LIVE_SECONDS=${DEMO_SECONDS:-45}
ANOMALY_RATE=${DEMO_ANOMALY_RATE:-0.0005}
BAD_RATE=${DEMO_BAD_RATE:-0.001}
STEP_MS=60000    # live traffic continues the history's event-time grid (same sensors, same seed)
SEED=42
SETS=(--set "kafka.bootstrap_servers=$BOOTSTRAP")
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
export SPARK_LOCAL_IP=${SPARK_LOCAL_IP:-127.0.0.1}

T0=$SECONDS
step() { printf '\n==> [%3ds] %s\n' $((SECONDS - T0)) "$*"; }
last_json() { grep '^{' | tail -n1; }
json_get() { $PY -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }

STARTED_KAFKA=0
DETECT_PID=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$DETECT_PID" ] && kill -0 "$DETECT_PID" 2>/dev/null; then
    echo "demo: stopping the detect job (pid $DETECT_PID)" >&2
    kill -INT "$DETECT_PID" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$DETECT_PID" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$DETECT_PID" 2>/dev/null; then kill -TERM -- "-$DETECT_PID" 2>/dev/null || true; fi
    wait "$DETECT_PID" 2>/dev/null || true
  fi
  if [ "$STARTED_KAFKA" = 1 ]; then
    KAFKA_PORT=$PORT scripts/kafka.sh stop || true
  fi
  if [ "$rc" != 0 ]; then
    echo "demo: FAILED (exit $rc) after $((SECONDS - T0))s; logs in $LOGS/" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- 1. broker
step "Kafka broker on $BOOTSTRAP"
if KAFKA_PORT=$PORT scripts/kafka.sh status >/dev/null 2>&1; then
  echo "demo: using the broker already running on $BOOTSTRAP (left running at the end)"
else
  STARTED_KAFKA=1  # set before start: a half-started broker is ours to stop too
  KAFKA_PORT=$PORT scripts/kafka.sh start
fi

# ---------------------------------------------------------------- 2. clean state
step "wiping $DEMO/ and topic $TOPIC"
rm -rf "$DEMO"
mkdir -p "$LOGS"
$PY - "$BOOTSTRAP" "$TOPIC" <<'EOF'
import sys
from spark_anomaly.kafka_admin import create_topic, delete_topic
bootstrap, topic = sys.argv[1:]
delete_topic(bootstrap, topic)
create_topic(bootstrap, topic, 2)
EOF

# ---------------------------------------------------------------- 3. history + train
step "history: $SENSORS sensors, ${HOURS}h of event time at 60 s, no anomalies"
HIST=$($PY scripts/produce.py history --out-dir "$DEMO/history" --truth "$DEMO/history_truth.jsonl" \
  --sensors "$SENSORS" --hours "$HOURS" --step-ms "$STEP_MS" --seed "$SEED" --anomaly-rate 0 | last_json)
echo "$HIST"
NEXT_TS=$(echo "$HIST" | json_get next_ts)

step "training the model (log: $LOGS/train.log)"
if ! $PY jobs/train_model.py --config "$CONF" "${SETS[@]}" >"$LOGS/train.out" 2>"$LOGS/train.log"; then
  tail -n 40 "$LOGS/train.log" >&2
  exit 1
fi
tail -n1 "$LOGS/train.out"

# ---------------------------------------------------------------- 4. detect + live traffic
step "starting the detect job: zscore + ema + robust + flatline (log: $LOGS/detect.log)"
# Job control on: the background job gets its own process group and keeps SIGINT (non-interactive
# shells start background jobs with SIGINT ignored), so cleanup can stop it gracefully.
set -m
$PY jobs/stream_detect.py --config "$CONF" "${SETS[@]}" --run-seconds 600 >"$LOGS/detect.log" 2>&1 &
DETECT_PID=$!
set +m
CKPT=$DEMO/checkpoints/detect
for i in $(seq 1 240); do
  [ -f "$CKPT/intake/metadata" ] && [ -f "$CKPT/stateful/metadata" ] && break
  if ! kill -0 "$DETECT_PID" 2>/dev/null; then
    echo "demo: the detect job exited during startup:" >&2; tail -n 40 "$LOGS/detect.log" >&2; exit 1
  fi
  [ "$i" = 240 ] && { echo "demo: the detect job did not start within 120 s" >&2; exit 1; }
  sleep 0.5
done
echo "detect job up (pid $DETECT_PID)"

step "live traffic: $RATE records/s for ${LIVE_SECONDS}s, anomaly rate $ANOMALY_RATE, bad rate $BAD_RATE"
LIVE=$($PY scripts/produce.py live --bootstrap "$BOOTSTRAP" --topic "$TOPIC" --create-partitions 2 \
  --sensors "$SENSORS" --seed "$SEED" --start-ts "$NEXT_TS" --step-ms "$STEP_MS" \
  --rate "$RATE" --seconds "$LIVE_SECONDS" --anomaly-rate "$ANOMALY_RATE" --bad-rate "$BAD_RATE" \
  --truth "$DEMO/truth.jsonl" | last_json)
echo "$LIVE"

step "waiting for the detect job to catch up (at most 120 s)"
if ! $PY -m spark_anomaly.demo_report wait --config "$CONF" "${SETS[@]}" --timeout 120; then
  echo "demo: reporting on what was processed so far" >&2
fi
if ! kill -0 "$DETECT_PID" 2>/dev/null; then
  echo "demo: the detect job died:" >&2; tail -n 40 "$LOGS/detect.log" >&2; exit 1
fi
kill -INT "$DETECT_PID" 2>/dev/null || true
for _ in $(seq 1 60); do kill -0 "$DETECT_PID" 2>/dev/null || break; sleep 0.5; done
wait "$DETECT_PID" 2>/dev/null || true
DETECT_PID=
echo "detect job stopped"

# ---------------------------------------------------------------- 5. report
step "report (log: $LOGS/report.log)"
$PY -m spark_anomaly.demo_report report --config "$CONF" "${SETS[@]}" --truth "$DEMO/truth.jsonl" \
  --chart "$DEMO/chart.png" 2>"$LOGS/report.log"
step "demo done in $((SECONDS - T0))s"
