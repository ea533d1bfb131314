#!/usr/bin/env bash
# Run Triton's perf_analyzer against a running shipyard server, over HTTP and gRPC.
#
#   bench/perf_analyzer.sh MODEL [HTTP_PORT] [GRPC_PORT] [extra perf_analyzer flags...]
#
# perf_analyzer ships inside the PyPI package tritonclient[all] 2.35.0 (a native binary). It needs
# Debian's libb64-0d and libcudart.so.12 (PyPI: nvidia-cuda-runtime-cu12) to start; no GPU is used.
# Both go into bench/.work/perf-analyzer, apart from the project's own environment.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${1:?usage: bench/perf_analyzer.sh MODEL [HTTP_PORT] [GRPC_PORT] [flags...]}"
HTTP_PORT="${2:-8000}"
GRPC_PORT="${3:-8001}"
shift $(( $# < 3 ? $# : 3 ))
VENV=bench/.work/perf-analyzer

if ! ldconfig -p | grep -q libb64.so.0d; then
  echo "perf_analyzer needs libb64: apt-get install libb64-0d" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/perf_analyzer" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet 'tritonclient[all]==2.35.0' nvidia-cuda-runtime-cu12
fi
CUDART=$("$VENV/bin/python" -c "import nvidia.cuda_runtime as m, os; print(os.path.join(list(m.__path__)[0], 'lib'))")
export LD_LIBRARY_PATH="$CUDART${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

for protocol in http grpc; do
  port=$([ "$protocol" = http ] && echo "$HTTP_PORT" || echo "$GRPC_PORT")
  for concurrency in 1 8 64; do
    echo "== perf_analyzer -m $MODEL -u 127.0.0.1:$port -i $protocol --concurrency-range $concurrency"
    "$VENV/bin/perf_analyzer" -m "$MODEL" -u "127.0.0.1:$port" -i "$protocol" \
      --concurrency-range "$concurrency" --measurement-interval 3000 "$@" | grep -E "Throughput|p50|p99"
  done
done
