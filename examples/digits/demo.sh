#!/usr/bin/env bash
# The demo behind `make demo`: build the digits model, import it, serve it, print a curl line.
set -euo pipefail
cd "$(dirname "$0")/../.."
export SHIPYARD_HOME="${SHIPYARD_HOME:-$PWD/.shipyard}"
PORT="${PORT:-8000}"          # HTTP; PORT=9000 GRPC_PORT=9001 make demo when these are taken
GRPC_PORT="${GRPC_PORT:-8001}"
BIN=.venv/bin
OUT=examples/digits/out

echo "== building the demo model (a small MLP on scikit-learn's digits)"
$BIN/python examples/digits/build.py "$OUT"
echo "== importing it (an identical model already in the registry is reused, not added again)"
$BIN/shipyard model import "$OUT/digits.pt" --name digits --input-shape 1,64 \
  --labels "$OUT/labels.txt" --dataset "$OUT/digits-test.npz" --reference "$OUT/digits-test.npz" \
  --description "MLP on scikit-learn digits (demo)"
$BIN/shipyard model alias digits "$($BIN/shipyard model show digits:latest --json | $BIN/python -c 'import json,sys; print(json.load(sys.stdin)["version"])')" production
echo "== importing it again as a model that takes pictures (a drawn digit, shrunk to 8x8 by its recipe)"
$BIN/shipyard model import "$OUT/digits.pt" --name digits-pictures --input-shape 1,64 --labels "$OUT/labels.txt" \
  --preprocess "image: resize=8x8, channels=L, scale=16/255, invert=true"

echo "== serving it"
$BIN/shipyard serve digits digits-pictures --port "$PORT" --grpc-port "$GRPC_PORT" --log-level warning &
server=$!
stop() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }
trap stop EXIT
trap 'echo; echo "stopped"; stop; exit 0' INT TERM  # Ctrl-C is how the demo ends: not an error
for _ in $(seq 1 120); do
  if $BIN/python -c "import httpx,sys; sys.exit(httpx.get('http://127.0.0.1:$PORT/v2/health/ready').status_code != 200)" 2>/dev/null; then
    break
  fi
  kill -0 $server 2>/dev/null || { echo "the server did not start" >&2; exit 1; }
  sleep 0.5
done

echo
echo "shipyard is serving digits on http://127.0.0.1:$PORT (docs: http://127.0.0.1:$PORT/docs). Try:"
echo
echo "  curl -s -H 'content-type: application/json' -d @$PWD/$OUT/seven.json http://127.0.0.1:$PORT/v1/models/digits/predict"
echo
echo "  -> $(curl -s -H 'content-type: application/json' -d @$OUT/seven.json http://127.0.0.1:$PORT/v1/models/digits/predict)"
echo
echo "Or send a picture: draw a digit (dark on light), save it as a PNG, and post it:"
echo
echo "  curl -s --data-binary @$PWD/$OUT/seven.png -H 'content-type: image/png' http://127.0.0.1:$PORT/v1/models/digits-pictures/predict"
echo
echo "  -> $(curl -s --data-binary @$OUT/seven.png -H 'content-type: image/png' http://127.0.0.1:$PORT/v1/models/digits-pictures/predict)"
echo
echo "Or draw one in your browser, where the model runs in the page: http://127.0.0.1:$PORT/edge/digits-pictures/"
echo
echo "Dashboard: http://127.0.0.1:$PORT/dashboard/digits   Metrics: http://127.0.0.1:$PORT/metrics"
echo "(SHIPYARD_HOME=$SHIPYARD_HOME; gRPC on 127.0.0.1:$GRPC_PORT; Ctrl-C stops the server)"
# Ctrl-C reaches the server too, which stops on it by itself: the wait can end that way, before the
# trap above has run, and the server's status says whether it stopped cleanly.
wait "$server"
echo; echo "stopped"
