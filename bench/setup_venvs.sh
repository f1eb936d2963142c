#!/usr/bin/env bash
# Create one virtual environment per drift library under bench/.venvs/<lib> from the pinned
# requirement files, so that each library runs with the numpy/pandas it supports (nannyml and
# alibi-detect need numpy < 2) without touching the project's own environment.
#
#   bench/setup_venvs.sh                 # all libraries
#   bench/setup_venvs.sh alibi nannyml   # a subset (alibi | nannyml | evidently)
#
# A library that fails to install is reported and skipped; the benchmark then skips it too.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python="$candidate"; break; fi
  done
fi
libs=("$@")
[ ${#libs[@]} -eq 0 ] && libs=(alibi nannyml evidently)
failed=()
for lib in "${libs[@]}"; do
  req="$here/requirements-$lib.txt"
  venv="$here/.venvs/$lib"
  if [ ! -f "$req" ]; then echo "unknown library '$lib' (no $req)" >&2; failed+=("$lib"); continue; fi
  echo "== $lib: $venv ($("$python" --version 2>&1))"
  if "$python" -m venv "$venv" \
      && "$venv/bin/python" -m pip install --quiet --upgrade pip \
      && "$venv/bin/python" -m pip install --quiet -r "$req"; then
    echo "== $lib: installed"
  else
    echo "== $lib: FAILED to install; removing $venv so the benchmark skips it" >&2
    rm -rf "$venv"
    failed+=("$lib")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "not installed: ${failed[*]}" >&2
  exit 1
fi
