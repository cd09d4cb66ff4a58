#!/bin/sh
# docker-compose.yml, service `enroll`: once the control plane is healthy, a
# single-use join token for each agent (FLEETWALL_ENROLL_NODES: "name:labels
# name:labels"; the labels become the node's, bound at enrollment), handed to
# the agents in FLEETWALL_ENROLLMENT_DIR (<name>.token) with the CA they should
# trust (ca.crt); and a viewer API token for Prometheus to scrape /metrics
# with, in FLEETWALL_PROMETHEUS_DIR (token, ca.crt). It uses the control
# plane's first admin token (FLEETWALL_TOKEN_FILE) and CA (FLEETWALL_CA_CERT)
# from its data volume, mounted read-only.
#
# A token file that exists is kept (its agent may have used it already): to
# enroll an agent again (its identity volume was lost), delete
# <enrollment dir>/<name>.token and run `docker compose up enroll`.
# test/operator/compose-scripts.test.ts runs this script.
set -eu
: "${FLEETWALL_ENROLL_NODES:?}" "${FLEETWALL_ENROLLMENT_DIR:?}" "${FLEETWALL_PROMETHEUS_DIR:?}" "${FLEETWALL_CA_CERT:?}"
# The fleetwall command of this image (bin/ two levels above this script).
cli() { node "$(dirname "$0")/../../bin/fleetwall.mjs" "$@"; }
out=$FLEETWALL_ENROLLMENT_DIR
prom=$FLEETWALL_PROMETHEUS_DIR
umask 077
cp "$FLEETWALL_CA_CERT" "$out/ca.crt.tmp" && mv "$out/ca.crt.tmp" "$out/ca.crt"
for spec in $FLEETWALL_ENROLL_NODES; do
  name=${spec%%:*}
  labels=${spec#*:}
  if [ ! -s "$out/$name.token" ]; then
    cli enroll create --node-name "$name" --labels "$labels" --ttl 24h > "$out/$name.token.tmp"
    mv "$out/$name.token.tmp" "$out/$name.token"
    echo "join token for $name ($labels) in $out/$name.token"
  fi
done
# Prometheus runs as nobody: its token and CA are world-readable, in a volume only it (and this step) mounts.
if [ ! -s "$prom/token" ]; then
  cli token create --role viewer --name prometheus > "$prom/token.tmp"
  chmod 0444 "$prom/token.tmp"
  mv "$prom/token.tmp" "$prom/token"
fi
cp "$FLEETWALL_CA_CERT" "$prom/ca.crt.tmp" && chmod 0444 "$prom/ca.crt.tmp" && mv "$prom/ca.crt.tmp" "$prom/ca.crt"
