#!/usr/bin/env bash
# The package works outside the checkout: build the wheel, install it into a fresh virtual
# environment that reuses .venv's installed dependencies (no download), check that simpleclip
# is imported from that install and not from the source tree, then run `simpleclip demo` in an
# empty temporary folder. Called by .ci/run; run it alone with `bash .ci/wheel_demo.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Build from a copy of what the wheel needs, so that no build/ folder lands in the checkout.
mkdir "$work/src" && cp -r pyproject.toml README.md simpleclip "$work/src/"
.venv/bin/python -m pip wheel --quiet --no-deps --no-build-isolation -w "$work/dist" "$work/src"
wheel=$(ls "$work"/dist/simpleclip-*.whl)

# A bare venv whose site-packages points at .venv's through a .pth file. A .pth line only adds a
# folder to sys.path: the .pth files inside it (the editable install of this checkout) are not run.
.venv/bin/python -m venv --without-pip "$work/venv"
purelib='import sysconfig; print(sysconfig.get_paths()["purelib"])'
.venv/bin/python -c "$purelib" >"$("$work/venv/bin/python" -c "$purelib")/dependencies.pth"
.venv/bin/python -m pip --python "$work/venv/bin/python" install --quiet --no-deps "$wheel"

mkdir "$work/run" && cd "$work/run"
where=$("$work/venv/bin/python" -c 'import simpleclip; print(simpleclip.__file__)')
echo "simpleclip imported from $where"
case "$where" in
  "$work/venv/"*) ;;
  *) echo "error: simpleclip was not imported from the wheel" >&2; exit 1 ;;
esac
"$work/venv/bin/simpleclip" demo
test -f runs/demo/metrics.json && test -d runs/demo/model
echo "wheel demo passed: $(basename "$wheel")"
