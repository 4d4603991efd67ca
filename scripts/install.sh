#!/usr/bin/env bash
# Install pbx-engine on Debian 12 (apt: libspandsp2, the fax engine) and start it in the foreground on its embedded default:
#   a virtualenv in ./.venv, `pip install -e .` (runs from this checkout), then
#   pbx serve --data-dir ./data --sip 0.0.0.0:5060
# The data dir is SQLite; on first start the example company (config/example-company.yaml) is imported.
# The web admin and REST API listen on http://127.0.0.1:8080/; `pbx admin invite` makes the first admin.
# Stop with Ctrl-C (SIGINT) or SIGTERM.
#
# env: SIP (0.0.0.0:5060)  DATA_DIR (./data)  LOG_LEVEL (info)  NO_START=1 (install only)
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
cd "$REPO"
apt_install libspandsp2  # the fax engine (engine/media/fax.py) loads it through cffi
ensure_venv
ensure_build_tools
say "pip install -e . (into $VENV)"
pip_install -e .
[ "${NO_START:-0}" = 1 ] && { say "installed: $VENV/bin/pbx"; exit 0; }
say "starting: pbx serve --data-dir ${DATA_DIR:-./data} --sip ${SIP:-0.0.0.0:5060}"
exec "$VENV/bin/pbx" serve --data-dir "${DATA_DIR:-./data}" --sip "${SIP:-0.0.0.0:5060}" --log-level "${LOG_LEVEL:-info}"
