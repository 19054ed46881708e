#!/usr/bin/env bash
# The JUnit XML schema the tests check `deploy --junit` reports against: Maven Surefire's
# surefire-test-report.xsd (the published schema of the JUnit XML dialect CI systems read),
# taken from the Surefire source release on Maven Central, its SHA-512 checked, and cached.
#
#   SUREFIRE_VERSION   the Surefire release (default below); MOORAGE_K8S_CACHE the cache root
# Prints the schema's path. Idempotent: a cached schema is not fetched again.
set -euo pipefail
V=${SUREFIRE_VERSION:-3.5.2}
CACHE=${MOORAGE_K8S_CACHE:-/var/cache/moorage}/schemas
out=$CACHE/surefire-test-report-$V.xsd
log() { printf '==> %s\n' "$*" >&2; }
if [ -s "$out" ]; then log "JUnit schema: cached ($out)"; echo "$out"; exit 0; fi
mkdir -p "$CACHE"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
url=https://repo1.maven.org/maven2/org/apache/maven/surefire/surefire/$V/surefire-$V-source-release.zip
log "JUnit schema: Surefire $V source release from Maven Central"
curl -fsSL --retry 3 -o "$tmp/src.zip" "$url"
curl -fsSL --retry 3 -o "$tmp/src.zip.sha512" "$url.sha512"
echo "$(cut -d' ' -f1 <"$tmp/src.zip.sha512")  $tmp/src.zip" | sha512sum -c --quiet - \
  || { echo "checksum mismatch for $url" >&2; exit 1; }
unzip -p "$tmp/src.zip" "surefire-$V/maven-surefire-plugin/src/site/resources/xsd/surefire-test-report.xsd" >"$tmp/schema.xsd"
grep -q '<xs:element name="testsuite">' "$tmp/schema.xsd" || { echo "no testsuite element in the schema of $url" >&2; exit 1; }
mv -f "$tmp/schema.xsd" "$out"
log "JUnit schema: $out"
echo "$out"
