#!/bin/bash
# version.sh — the extension's one version number: the Makefile's EXTVERSION
# must be what comet.control, META.json and the install script say.
set -eu
cd "$(dirname "$0")/.."
version=$(make -s print-EXTVERSION)
fail=0
grep -q "^default_version = '$version'$" comet.control || { echo "comet.control does not say $version"; fail=1; }
[ "$(grep -c "\"version\": \"$version\"" META.json)" -eq 2 ] || { echo "META.json does not say $version twice"; fail=1; }
[ -f "sql/comet--$version.sql" ] || { echo "sql/comet--$version.sql is missing"; fail=1; }
[ $fail -eq 0 ] && echo "version $version is consistent"
exit $fail
