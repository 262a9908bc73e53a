#!/usr/bin/env bash
# The demo: the service on its embedded default (local Ray, CPU, demo model) fed by the synthetic
# LCLStreamer pusher; waits until every frame is accounted for, shows what was written, shuts down.
#   FRAMES=512 SHAPE="512 512" scripts/demo.sh      (defaults: 256 frames of 256x256)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-env.sh
FRAMES="${FRAMES:-256}"
SHAPE="${SHAPE:-256 256}"
URL="http://127.0.0.1:8000"
rm -rf output && mkdir -p output

# Job control on, so the service gets Ctrl-C (SIGINT) like an interactive `serve run` would:
# a non-interactive shell starts background jobs with SIGINT ignored.
set -m
serve run serve_config.yaml > output/serve.log 2>&1 &
SERVE_PID=$!
set +m
stop_service() {
    if kill -0 "$SERVE_PID" 2>/dev/null; then
        echo "stopping the service (Ctrl-C): in-flight batches drain, CXI files are closed"
        kill -INT "$SERVE_PID"
        wait "$SERVE_PID" || true
    fi
}
trap stop_service EXIT

echo "waiting for the service to be ready (log: output/serve.log)"
for _ in $(seq 1 180); do
    curl -sf "$URL/readyz" > /dev/null && break
    kill -0 "$SERVE_PID" 2>/dev/null || { tail -n 40 output/serve.log; exit 1; }
    sleep 1
done
curl -sf "$URL/readyz" > /dev/null || { echo "not ready after 180 s"; tail -n 40 output/serve.log; exit 1; }

# shellcheck disable=SC2086
peaknet-serve push --address tcp://127.0.0.1:12321 --frames "$FRAMES" --batch-size 16 \
    --shape $SHAPE --peaks 30 --hit-fraction 0.7 --seed 1 --truth output/truth.jsonl --linger 30
peaknet-serve status --url "$URL" --wait-frames "$FRAMES" --timeout 300

stop_service
trap - EXIT
echo "CXI files written:"
peaknet-serve inspect output/*.cxi
