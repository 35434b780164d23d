#!/usr/bin/env bash
# Stop what start.sh STATE_DIR started (Unleash, then PostgreSQL) and delete the database.
# Logs in STATE_DIR are kept. Idempotent: stopping twice, or something never started, is fine.
set -uo pipefail
state="${1:?usage: stop.sh STATE_DIR}"

if [[ -f "$state/unleash.pid" ]]; then
  pid="$(cat "$state/unleash.pid")"
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$state/unleash.pid"
fi

if [[ -f "$state/pg_home" ]]; then
  pg_home="$(cat "$state/pg_home")"
  if [[ -f "$pg_home/data/postmaster.pid" ]]; then
    bindir="$(compgen -G '/usr/lib/postgresql/*/bin' | sort -V | tail -n 1 || true)"
    pg_ctl="${bindir:+$bindir/}pg_ctl"
    if ((EUID == 0)); then
      runuser -u postgres -- "$pg_ctl" -D "$pg_home/data" -m immediate -w stop >/dev/null
    else
      "$pg_ctl" -D "$pg_home/data" -m immediate -w stop >/dev/null
    fi
  fi
  cp -f "$pg_home/postgres.log" "$state/postgres.log" 2>/dev/null
  rm -rf "$pg_home"
  rm -f "$state/pg_home"
fi
exit 0
