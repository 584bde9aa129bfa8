#!/usr/bin/env bash
# Unpacks MathJax (npm package `mathjax`, pinned) into docs/_vendor/mathjax, for an offline docs
# build: the pages load MathJax and its fonts from _static/mathjax, never from a CDN.
# Usage: docs/fetch_mathjax.sh [VERSION]   (needs npm; the npm registry is the only network use)
set -euo pipefail
version="${1:-3.2.2}"
dest="$(cd "$(dirname "$0")" && pwd)/_vendor/mathjax"
command -v npm >/dev/null || { echo "error: npm is needed to fetch MathJax (apt-get install npm)"; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "mathjax@${version}" >/dev/null && tar xzf "mathjax-${version}.tgz")
es5="$tmp/package/es5"
rm -rf "$dest"
mkdir -p "$dest/output/chtml"
# The combined TeX + MathML input / CommonHTML output component, the TeX extensions it autoloads,
# the CommonHTML fonts and the menu's UI: what the pages need (about 2.5 MB of the package's 24).
cp "$es5/tex-mml-chtml.js" "$dest/"
cp -r "$es5/input" "$es5/ui" "$dest/"
cp -r "$es5/output/chtml/fonts" "$dest/output/chtml/"
cp "$tmp/package/LICENSE" "$dest/"
echo "$version" > "$dest/VERSION"
echo "MathJax $version -> $dest"
