#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster and an Unleash server on it, both on 127.0.0.1, as
# plain background processes (no systemd), and print their settings as KEY=VALUE lines:
#   UNLEASH_URL, UNLEASH_ADMIN_TOKEN, UNLEASH_BACKEND_TOKENS, DATABASE_URL
# Usage: start.sh STATE_DIR   (stop.sh STATE_DIR stops both and deletes the database)
#   PG_PORT, UNLEASH_PORT      ports (defaults 54329, 4242)
#   UNLEASH_ADMIN_TOKEN        admin API token (default "*:*.canarystream-admin")
#   UNLEASH_BACKEND_TOKENS     backend tokens (default "default:development.canarystream-backend")
#   UNLEASH_START_TIMEOUT      seconds to wait for Unleash to answer (default 120)
# PostgreSQL refuses to run as root; as root its data folder is a fresh temporary folder owned
# by the postgres user (STATE_DIR may not be reachable by it) and it runs via runuser.
# Run install.sh first.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
state="${1:?usage: start.sh STATE_DIR}"
mkdir -p "$state"
state="$(cd "$state" && pwd)"
pg_port="${PG_PORT:-54329}"
unleash_port="${UNLEASH_PORT:-4242}"
admin_token="${UNLEASH_ADMIN_TOKEN:-*:*.canarystream-admin}"
backend_tokens="${UNLEASH_BACKEND_TOKENS:-default:development.canarystream-backend}"
timeout="${UNLEASH_START_TIMEOUT:-120}"

fail() {
  echo "start-unleash: $*" >&2
  exit 1
}
[[ -d "$here/node_modules/unleash-server" ]] || fail "unleash-server is not installed (run $here/install.sh)"
bindir="$(compgen -G '/usr/lib/postgresql/*/bin' | sort -V | tail -n 1 || true)"
if [[ -z "$bindir" ]]; then
  command -v initdb >/dev/null || fail "PostgreSQL is not installed (run $here/install.sh)"
  bindir="$(dirname "$(command -v initdb)")"
fi
[[ ! -e "$state/unleash.pid" ]] || fail "$state already holds a running Unleash (stop.sh $state)"

if ((EUID == 0)); then
  pg_home="$(mktemp -d "${TMPDIR:-/tmp}/canarystream-pg.XXXXXX")"
  chown postgres: "$pg_home"
  as_postgres() { runuser -u postgres -- "$@"; }
else
  pg_home="$state/pg"
  mkdir -p "$pg_home"
  as_postgres() { "$@"; }
fi
echo "$pg_home" >"$state/pg_home"

# Durability is pointless for a database that lives as long as a test run.
as_postgres "$bindir/initdb" -D "$pg_home/data" -U unleash -A trust -E UTF8 --no-locale \
  >"$pg_home/initdb.log" 2>&1 || fail "initdb failed: $(cat "$pg_home/initdb.log")"
options="-c listen_addresses=127.0.0.1 -p $pg_port -k $pg_home -c fsync=off"
options+=" -c synchronous_commit=off -c full_page_writes=off"
as_postgres "$bindir/pg_ctl" -D "$pg_home/data" -l "$pg_home/postgres.log" -o "$options" -w -t 60 \
  start >/dev/null || fail "PostgreSQL did not start: $(cat "$pg_home/postgres.log")"
"$bindir/createdb" -h 127.0.0.1 -p "$pg_port" -U unleash unleash \
  || fail "createdb failed: $(cat "$pg_home/postgres.log")"
database_url="postgres://unleash@127.0.0.1:$pg_port/unleash"

cd "$here"
DATABASE_URL="$database_url" UNLEASH_HOST=127.0.0.1 UNLEASH_PORT="$unleash_port" \
  UNLEASH_ADMIN_TOKEN="$admin_token" UNLEASH_BACKEND_TOKENS="$backend_tokens" TZ=UTC \
  nohup node server.js >"$state/unleash.log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$state/unleash.pid"

url="http://127.0.0.1:$unleash_port"
probe="fetch('$url/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"
deadline=$((SECONDS + timeout))
until node -e "$probe" 2>/dev/null; do
  kill -0 "$pid" 2>/dev/null || fail "Unleash exited: $(tail -n 40 "$state/unleash.log")"
  ((SECONDS < deadline)) || fail "Unleash not healthy after $timeout s: $(tail -n 40 "$state/unleash.log")"
  sleep 0.5
done
echo "UNLEASH_URL=$url"
echo "UNLEASH_ADMIN_TOKEN=$admin_token"
echo "UNLEASH_BACKEND_TOKENS=$backend_tokens"
echo "DATABASE_URL=$database_url"
