# Helpers for scripts/install.sh and scripts/test.sh (Debian 12). Source it; it does nothing by itself.

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$REPO/.venv}"

say() { echo "==> $*" >&2; }
die() { echo "ERROR: $*" >&2; exit 1; }

as_root() {
	if [ "$(id -u)" = 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo -n "$@" || sudo "$@"
	else
		die "need root for: $* (run as root or install sudo)"
	fi
}

pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# apt_install PKG...: installs the packages not installed yet; non-interactive, and retries while another
# process holds the dpkg/apt lock (unattended-upgrades on a fresh machine, another job in CI).
apt_install() {
	local missing=() p i
	for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
	[ ${#missing[@]} -eq 0 ] && return 0
	command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} by hand"
	say "apt-get install ${missing[*]}"
	local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=120
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
	for i in $(seq 1 20); do
		as_root "${apt[@]}" update </dev/null && break
		say "apt-get update failed (lock held?); retry $i/20 in 15 s"
		sleep 15
	done
	for i in $(seq 1 20); do
		as_root "${apt[@]}" install --no-install-recommends "${missing[@]}" </dev/null && return 0
		say "apt-get install failed (lock held?); retry $i/20 in 15 s"
		sleep 15
	done
	die "apt-get install ${missing[*]} kept failing"
}

# ensure_venv: $VENV with a Python >= 3.11 (python3-venv from apt when the interpreter lacks venv/ensurepip)
ensure_venv() {
	local py="${PYTHON:-python3}"
	command -v "$py" >/dev/null || apt_install python3
	"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$py is older than 3.11"
	if [ ! -x "$VENV/bin/python" ]; then
		"$py" -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
		say "creating $VENV"
		"$py" -m venv "$VENV"
	fi
}

# ensure_build_tools: what `pip install .` needs to compile the SIP core with mypyc (setup.py): a C compiler
# and the headers of the venv's Python (Debian's python3-dev for /usr/bin/python3; a self-built or pyenv
# Python ships its own).
ensure_build_tools() {
	command -v gcc >/dev/null || apt_install gcc libc6-dev
	local inc
	inc="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
	[ -f "$inc/Python.h" ] || apt_install python3-dev
	[ -f "$inc/Python.h" ] || die "no Python.h in $inc: install the headers of $VENV/bin/python"
}

# ensure_postgres: the tests need a PostgreSQL server (issue 6: a test that cannot reach it fails). These machines
# run one on 127.0.0.1:5432 (trust auth, database test); where none answers there, install Debian's, start
# its cluster and give the tests a role and database of their own through PBX_TEST_POSTGRES_URL.
ensure_postgres() {
	if [ -n "${PBX_TEST_POSTGRES_URL:-}" ] || port_open 127.0.0.1 5432; then
		return 0
	fi
	apt_install postgresql
	local version
	version="$(ls /usr/lib/postgresql | sort -V | tail -1)"
	[ -n "$version" ] || die "postgresql installed but no server version found in /usr/lib/postgresql"
	say "starting PostgreSQL $version"
	as_root pg_ctlcluster "$version" main start 2>/dev/null || as_root service postgresql start || true
	local i
	for i in $(seq 1 30); do port_open 127.0.0.1 5432 && break; sleep 1; done
	port_open 127.0.0.1 5432 || die "PostgreSQL did not start on 127.0.0.1:5432"
	as_root runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -d postgres -c \
		"DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pbx_test') THEN
		   CREATE ROLE pbx_test LOGIN PASSWORD 'pbx_test'; END IF; END \$\$;" </dev/null
	as_root runuser -u postgres -- psql -q -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'pbx_test'" \
		</dev/null | grep -q 1 || as_root runuser -u postgres -- createdb -O pbx_test pbx_test </dev/null
	export PBX_TEST_POSTGRES_URL="postgresql+psycopg://pbx_test:pbx_test@127.0.0.1:5432/pbx_test"
	say "tests use $PBX_TEST_POSTGRES_URL"
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

pip_install() {
	"$VENV/bin/python" -m pip install -q --disable-pip-version-check --progress-bar off "$@" </dev/null
}
