# Shared setup for scripts/build_book.sh and scripts/run_tests.sh; source it, don't run it.
#
# - Uses the active virtual environment (or a non-base conda environment) if there is one;
#   otherwise creates .venv in the repository (or reuses it) and activates it.
# - Installs torch only when `import torch` fails:
#       pip install "torch==${FWI_TEACH_TORCH:-2.13.0}"
#   FWI_TEACH_TORCH      version to install (default 2.13.0)
#   FWI_TEACH_TORCH_INDEX_URL  optional package index for torch, e.g. PyTorch's CUDA wheel
#                        index for your CUDA version (see the install selector on pytorch.org)
# - Installs this package with its book and test extras: pip install -e ".[book,test]".
#   It is skipped when pyproject.toml has not changed since the last install into the same
#   environment; FWI_TEACH_REINSTALL=1 forces it.
# PYTHON chooses the interpreter that creates .venv (default: python3, then python).

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

_fwi_setup_start=$(date +%s)

if [ -n "${VIRTUAL_ENV:-}" ]; then
    echo "setup: using the active virtual environment $VIRTUAL_ENV"
elif [ -n "${CONDA_PREFIX:-}" ] && [ "${CONDA_DEFAULT_ENV:-base}" != "base" ]; then
    echo "setup: using the active conda environment $CONDA_PREFIX"
else
    if [ ! -x .venv/bin/python ]; then
        _fwi_python="${PYTHON:-$(command -v python3 || command -v python || true)}"
        if [ -z "$_fwi_python" ]; then
            echo "setup: error: no python3 found; install Python 3.10 or newer, or set PYTHON=/path/to/python" >&2
            exit 1
        fi
        if ! "$_fwi_python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
            echo "setup: error: $_fwi_python is Python $("$_fwi_python" -c 'import platform; print(platform.python_version())'); fwi_teach needs 3.10 or newer: set PYTHON=/path/to/python3.10+" >&2
            exit 1
        fi
        echo "setup: creating the virtual environment $REPO_ROOT/.venv with $_fwi_python"
        if ! "$_fwi_python" -m venv .venv; then
            echo "setup: error: '$_fwi_python -m venv' failed; on Debian or Ubuntu install the python3-venv package" >&2
            rm -rf .venv
            exit 1
        fi
    else
        echo "setup: reusing the virtual environment $REPO_ROOT/.venv"
    fi
    # shellcheck disable=SC1091
    source .venv/bin/activate
fi

if python -c 'import torch' >/dev/null 2>&1; then
    echo "setup: torch $(python -c 'import torch; print(torch.__version__)') is already installed"
else
    _fwi_torch_args=("torch==${FWI_TEACH_TORCH:-2.13.0}")
    if [ -n "${FWI_TEACH_TORCH_INDEX_URL:-}" ]; then
        _fwi_torch_args+=(--index-url "$FWI_TEACH_TORCH_INDEX_URL")
    fi
    echo "setup: installing ${_fwi_torch_args[*]}"
    python -m pip install "${_fwi_torch_args[@]}"
fi

_fwi_stamp="$(python -c 'import sys; print(sys.prefix)')/.fwi_teach_install_stamp"
_fwi_want="$REPO_ROOT $(python -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' pyproject.toml)"
if [ "${FWI_TEACH_REINSTALL:-0}" != "1" ] && [ -f "$_fwi_stamp" ] && [ "$(cat "$_fwi_stamp")" = "$_fwi_want" ] \
        && python -c 'import importlib.metadata as m; [m.version(d) for d in ("fwi_teach", "papermill", "jupyter-book", "pytest")]' >/dev/null 2>&1; then
    echo "setup: fwi_teach and its book and test extras are already installed"
else
    echo "setup: installing fwi_teach with its book and test extras"
    python -m pip install -e ".[book,test]"
    printf '%s\n' "$_fwi_want" > "$_fwi_stamp"
fi

echo "setup: done in $(( $(date +%s) - _fwi_setup_start )) s (python: $(command -v python))"
