#!/usr/bin/env bash
# Verifies deploy/spoold.service with systemd-analyze: any complaint (an unknown key, a bad
# value, a missing binary) fails. ExecStart is pointed at the freshly built spoold.
# usage: check_unit.sh UNIT_FILE SPOOLD_BINARY
set -u
unit=$1
spoold=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
grep -q '^Type=notify$' "$unit" || { echo "FAIL: $unit is not Type=notify"; exit 1; }
grep -q '^User=spool$' "$unit" || { echo "FAIL: $unit does not run as the spool user"; exit 1; }
sed "s|/usr/local/bin/spoold|$spoold|" "$unit" >"$tmp/spoold.service"
out=$(systemd-analyze verify "$tmp/spoold.service" 2>&1)
rc=$?
if [ $rc -ne 0 ] || [ -n "$out" ]; then
  echo "FAIL: systemd-analyze verify (exit $rc):"
  echo "$out"
  exit 1
fi
echo "spoold.service verifies cleanly"
