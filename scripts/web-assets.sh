#!/usr/bin/env bash
# The web view's partial Plotly bundle (only the trace types it draws: scatter, scattergl,
# parcoords), a third of the full bundle's size, fetched from the npm registry with npm itself
# into api/static/vendor/ (not committed) and served from there, offline. Without npm the
# server serves the full bundle the `plotly` Python package ships: the page works either way.
set -euo pipefail
cd "$(dirname "$0")/.."
package="plotly.js-gl2d-dist-min"
version="3.7.0"
dest="api/static/vendor"
target="$dest/plotly-gl2d-$version.min.js"
[ -s "$target" ] && exit 0
if ! command -v npm >/dev/null 2>&1; then
  echo "npm not found: the web view serves the full Plotly bundle from the plotly package" >&2
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# npm pack checks the tarball against the registry's integrity hash. Without the registry the
# page still works, on the full bundle: say so rather than fail the whole setup.
if ! (cd "$tmp" && npm pack --silent "$package@$version" >/dev/null); then
  echo "could not fetch $package@$version: the web view serves the full Plotly bundle" >&2
  exit 0
fi
tar -xzf "$tmp/$package-$version.tgz" -C "$tmp"
mkdir -p "$dest"
cp "$tmp/package/plotly-gl2d.min.js" "$target.part"
cp "$tmp/package/LICENSE" "$dest/plotly-LICENSE"
mv "$target.part" "$target"
