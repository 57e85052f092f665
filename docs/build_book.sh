#!/usr/bin/env bash
# Build the course as a book: execute the notebooks of one track into a temporary copy, then
# render them with their outputs, a landing page and previous/next links (MkDocs +
# mkdocs-jupyter, pinned in requirements-docs.txt) into _build/book/index.html.
#
#   SIMPLECLIP_TRACK=smoke|cpu|gpu  the track the notebooks run (default here: cpu)
#   SIMPLECLIP_SET="k=v ..."        passed on to the notebooks, which read it themselves
#   BOOK_OUT=DIR                    the site (default _build/book)
#   BOOK_WORK=DIR                   executed notebooks + MkDocs sources (default _build/book-src)
#   BOOK_NOTEBOOKS="a.ipynb ..."    the notebooks to run (default notebooks/*.ipynb, in order)
#   BOOK_EXECUTED=DIR               render DIR's already executed copies (same file names)
#                                   instead of executing: the tests execute them once for both
#                                   their checks and the book
#   PYTHON=PATH                     the Python to run them with (default: the repository's .venv
#                                   when there is one, else python3, the active environment's)
#
# A cell that raises stops the build with a non-zero exit. notebooks/ is never written to.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
if [ -n "${PYTHON:-}" ]; then
  python=$PYTHON
elif [ -x "$root/.venv/bin/python" ]; then
  python=$root/.venv/bin/python
else
  python=$(command -v python3)
fi
out=$(realpath -m "${BOOK_OUT:-_build/book}")
work=$(realpath -m "${BOOK_WORK:-_build/book-src}")
export SIMPLECLIP_TRACK=${SIMPLECLIP_TRACK:-cpu}
export NO_MKDOCS_2_WARNING=1  # mkdocs-material's end-of-life banner, printed on every build
read -r -a notebooks <<< "${BOOK_NOTEBOOKS:-$(echo notebooks/*.ipynb)}"

rm -rf "$work" && mkdir -p "$work/docs/figures"
start=$SECONDS
if [ -n "${BOOK_EXECUTED:-}" ]; then
  echo "book: rendering ${#notebooks[@]} notebooks executed in $BOOK_EXECUTED"
  for nb in "${notebooks[@]}"; do
    executed="$BOOK_EXECUTED/$(basename "$nb")"
    [ -f "$executed" ] || { echo "book: $executed is missing (did it fail to run?)" >&2; exit 1; }
    cp "$executed" "$work/docs/"
  done
else
  echo "book: executing ${#notebooks[@]} notebooks, track $SIMPLECLIP_TRACK"
  # Each notebook runs with cwd = its own folder (nbconvert's default), as in Jupyter.
  "$python" -m jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=-1 \
    --ExecutePreprocessor.kernel_name=python3 --ExecutePreprocessor.coalesce_streams=True \
    --output-dir "$work/docs" "${notebooks[@]}"
fi
echo "book: executed in $((SECONDS - start)) s"

# Markdown images such as ../docs/app_search.png travel with the site, under figures/.
# Live progress bars (ipywidgets) are dropped: a static page cannot show them, and their
# embed script would be fetched from a CDN.
"$python" - "$work/docs" "$root" <<'PY'
import re, shutil, sys
from pathlib import Path
import nbformat
pages, root = Path(sys.argv[1]), Path(sys.argv[2])
WIDGET = "application/vnd.jupyter.widget-view+json"
for path in pages.glob("*.ipynb"):
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if WIDGET not in o.get("data", {})]
        if cell.cell_type != "markdown":
            continue
        for ref in set(re.findall(r"\]\(\.\./(docs/[^)\s]+)\)", cell.source)):
            shutil.copy(root / ref, pages / "figures" / Path(ref).name)
            cell.source = cell.source.replace(f"](../{ref})", f"](figures/{Path(ref).name})")
    nbformat.write(nb, path)
PY

cp docs/book/mkdocs.yml "$work/mkdocs.yml"
{
  cat docs/book/index.md
  printf '\nThis copy was executed in the `%s` track' "$SIMPLECLIP_TRACK"
  [ -n "${SIMPLECLIP_SET:-}" ] && printf ' (with overrides)'
  printf ' on %s.\n' "$(date -u +%Y-%m-%d)"
} > "$work/docs/index.md"
# from $work: mkdocs-jupyter keeps its conversion cache in ./.cache
(cd "$work" && "$python" -m mkdocs build --quiet --strict --site-dir "$out")
echo "book: $out/index.html"
