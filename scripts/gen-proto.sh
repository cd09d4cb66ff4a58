#!/usr/bin/env bash
# Regenerates proto/gen/ (TypeScript, ts-proto) from proto/. The output is
# checked in; a test runs this into a temp dir and diffs, so it must be
# reproducible: pinned ts-proto, no timestamps.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-proto/gen}"
npx --no-install buf lint proto
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
( cd proto && npx --no-install buf generate --template buf.gen.yaml -o "$tmp" )
rm -rf "$out"
mkdir -p "$out"
cp -r "$tmp"/gen/. "$out"/
echo "generated $(find "$out" -name '*.ts' | wc -l) files into $out" >&2
