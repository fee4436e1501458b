#!/usr/bin/env bash
# CI: the JupyterLab extension that highlights %%sql cells ships inside the wheel.
#
# 1. Build the wheel (the build hook runs npm: Node.js and npm must be installed)
#    and check that the built extension is inside it, where JupyterLab looks.
# 2. Install that wheel into a fresh virtual environment and check that
#    `jupyter labextension list` there shows the extension enabled and OK.
# 3. An editable install on a machine without npm still works: the hook skips
#    the build and says so in one line.
set -euo pipefail
cd "$(dirname "$0")/.."

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
NAME=lunepool-magic-highlight
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

command -v npm >/dev/null || { echo "check_labextension: npm is needed to build the wheel" >&2; exit 1; }

# From a copy of the checkout as a fresh clone is (no extension built yet),
# so the wheel gets a production build. Required: without it the hook would
# build a wheel without the extension.
mkdir -p "$work/src" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$work/src"
LUNEPOOL_REQUIRE_LABEXTENSION=1 python3 -m pip wheel -q --no-deps -w "$work/dist" "$work/src"
rm -rf "$work/src/lunepool_magic/labextension" "$work/src/labextension/node_modules" "$work/src/labextension/lib"
wheel=$(ls "$work"/dist/lunepool_magic-*.whl)
contents=$(python3 -m zipfile -l "$wheel")
for file in package.json static/style.js install.json; do
    if ! grep -q "data/share/jupyter/labextensions/$NAME/$file" <<<"$contents"; then
        echo "check_labextension: $file of the extension is not in $(basename "$wheel")" >&2
        exit 1
    fi
done
echo "check_labextension: the extension is in $(basename "$wheel")"

# A fresh environment; JupyterLab and the package's dependencies come from this
# one (system site packages), the package itself only from the wheel.
python3 -m venv --system-site-packages "$work/venv"
"$work/venv/bin/python" -m pip install -q --no-deps "$wheel"
# `python -m jupyterlab.labextensions` is `jupyter labextension` run by the
# environment's own Python (the `jupyter` launcher would find another one on PATH).
listing=$(cd "$work" && JUPYTER_DATA_DIR="$work/data" "$work/venv/bin/python" -m jupyterlab.labextensions list 2>&1)
if ! grep -E "$NAME v[0-9.]+ .*enabled.*OK.*\(python, lunepool_magic\)" <<<"$listing" >/dev/null; then
    echo "check_labextension: jupyter labextension list does not show $NAME enabled:" >&2
    echo "$listing" >&2
    exit 1
fi
echo "check_labextension: jupyter labextension list shows $NAME enabled"

# Editable install without npm on PATH: it must succeed and say it skipped the build.
python3 -m venv --system-site-packages "$work/editable"
# The same clean copy (its build output was removed above).
log=$(PATH="$work/editable/bin" "$work/editable/bin/python" -m pip install -v --no-deps -e "$work/src" 2>&1) || {
    echo "check_labextension: the editable install without npm failed:" >&2
    echo "$log" | tail -60 >&2
    exit 1
}
if ! grep -q "lunepool_magic: the JupyterLab extension that highlights %%sql cells was not built (npm not found)" <<<"$log"; then
    echo "check_labextension: the editable install without npm did not say it skipped the build" >&2
    exit 1
fi
echo "check_labextension: an editable install without npm skips the build with one line"
