#!/usr/bin/env bash
# Main job: set up the environment, execute every chapter with papermill and build the HTML
# book in _build/html. PROFILE selects the profile (default smoke; gpu for the GPU runs).
# Extra arguments go to `python -m fwi_teach.book` (e.g. --chapters intro, --device cpu).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
python -m fwi_teach.book --profile "${PROFILE:-smoke}" "$@"
