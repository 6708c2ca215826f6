#!/usr/bin/env bash
# The version is stated once, in billing.control; everything else that
# names it must agree: META.json (the release and what it provides), the
# README's "Version" line, the changelog's newest entry, and an update
# script that leads to it. The PGXN "provides" file must exist.
set -euo pipefail
fail=0
version=$(sed -n "s/^default_version = '\(.*\)'/\1/p" billing.control)
check() { if [[ "$2" != "$3" ]]; then echo "FAIL: $1 says '$2', expected '$3' (billing.control: $version)"; fail=1; fi; }
check "META.json version" "$(python3 -c 'import json; print(json.load(open("META.json"))["version"])')" "$version.0"
check "META.json provides" "$(python3 -c 'import json; print(json.load(open("META.json"))["provides"]["billing"]["version"])')" "$version.0"
check "README.md" "$(sed -n 's/^Version \([0-9.]*\)\.$/\1/p' README.md | head -1)" "$version"
check "CHANGELOG.md" "$(sed -n 's/^## \([0-9.]*\) .*/\1/p' CHANGELOG.md | head -1)" "$version"
provides=$(python3 -c 'import json; print(json.load(open("META.json"))["provides"]["billing"]["file"])')
[[ -f $provides ]] || { echo "FAIL: META.json provides $provides, which does not exist"; fail=1; }
compgen -G "src/sql/updates/billing--*--$version.sql" >/dev/null \
    || { echo "FAIL: no update script leads to $version in src/sql/updates/"; fail=1; }
((fail == 0)) && echo "packaging: version $version everywhere; $provides exists; an update leads to it"
exit "$fail"
