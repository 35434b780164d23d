#!/usr/bin/env bash
# Run a command with the local Kafka broker up: start it unless it already runs, and stop it
# afterwards only if this script started it (then its data are wiped too, as tests leave
# their topics behind). Usage: deploy/kafka/with-broker.sh PYTHON COMMAND [ARGS...]
set -uo pipefail
python="$1"; shift
started=0
if ! "$python" -m canarystream kafka status >/dev/null 2>&1; then
  "$python" -m canarystream kafka up || exit 1
  started=1
fi
"$@"
status=$?
if ((started)); then
  "$python" -m canarystream kafka down --wipe
fi
exit "$status"
