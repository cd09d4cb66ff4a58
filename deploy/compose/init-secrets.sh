#!/bin/sh
# docker-compose.yml, service `secrets`: on the first start only, a random
# password (192 bits, hex) in each file named as an argument: Postgres' (volume
# db-secret, read by Postgres and the control plane) and Grafana's admin user's
# (volume grafana-secret). Nothing is ever a default password; an existing
# file is kept, so restarts change nothing. Read Grafana's with
#   docker compose exec grafana cat /run/fleetwall/grafana-admin-password
# test/operator/compose-scripts.test.ts runs this script.
set -eu
[ "$#" -gt 0 ] || { echo "usage: init-secrets.sh FILE..." >&2; exit 2; }
random() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }
for f in "$@"; do
  if [ ! -s "$f" ]; then
    # The services read these as their own users (postgres, grafana): world-readable, inside a
    # volume that only the services that need it mount.
    umask 022
    random > "$f.tmp"
    chmod 0444 "$f.tmp"
    mv "$f.tmp" "$f"
    echo "created $f"
  fi
done
