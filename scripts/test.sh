#!/usr/bin/env bash
# Install what the tests need on Debian 12 and run the whole suite:
#   apt-get: sip-tester (SIPp), baresip, chromium (the web admin's tests drive it with Playwright), libspandsp2 (fax),
#            sipvicious (the scanner tests: svwar, svcrack),
#            python3-venv, gcc and the Python headers when needed, and postgresql when no server answers on 127.0.0.1:5432 (started, with a role for the tests)
#   pip:     -e '.[test]' into ./.venv (pytest, hypothesis, ruff, mypy, import-linter, pjsua2-python,
#            playwright)
#   then:    python -m pytest (unit tests, quality gates, integration tests against a real `pbx serve`)
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -m integration -x`).
# Exit status: pytest's, except that "no tests collected" (5) is a failure too.
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
cd "$REPO"
apt_install sip-tester baresip chromium libspandsp2 sipvicious
ensure_postgres
ensure_venv
ensure_build_tools
say "pip install -e '.[test]' (into $VENV)"
pip_install -e '.[test]'
[ -d "$REPO/../shared" ] || say "WARNING: $REPO/../shared is missing; tests that need it will fail"
export PATH="$VENV/bin:$PATH"
say "pytest $*"
set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
	echo "ERROR: pytest collected no tests" >&2
	exit 1
fi
exit "$rc"
