#!/usr/bin/env bash
# Run a command with the local Kafka broker up: start it unless it already runs, and stop it
# afterwards only if this script started it (then its data are wiped too, as tests leave
# their topics behind). Usage: deploy/kafka/with-broker.sh PYTHON COMMAND [ARGS...]
# KAFKA_PORT (default 19092) picks the broker's client port; when set, the command gets
# KAFKA_BOOTSTRAP for it, so that a second broker (another CANARYSTREAM_KAFKA_VERSION) can
# run beside one already up on the default port without either being mistaken for the other.
set -uo pipefail
python="$1"; shift
port="${KAFKA_PORT:-19092}"
if [[ -n "${KAFKA_PORT:-}" ]]; then
  export KAFKA_BOOTSTRAP="127.0.0.1:$port"
fi
started=0
if ! "$python" -m canarystream kafka status --port "$port" >/dev/null 2>&1; then
  "$python" -m canarystream kafka up --port "$port" || exit 1
  started=1
fi
"$@"
status=$?
if ((started)); then
  "$python" -m canarystream kafka down --wipe --port "$port"
fi
exit "$status"
