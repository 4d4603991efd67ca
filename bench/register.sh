#!/usr/bin/env bash
# REGISTER + digest auth throughput of pbx-engine, side by side with the Kamailio anchor, in one run.
#
# usage: bench/register.sh [RATE ...]
#   RATE ...   offered registrations/s, increasing (default: 1000 2000 3000 4000 5000 6000 8000 10000
#              12000 15000 17500 20000). Each step runs STEP_SECS seconds (SIPp -m RATE*STEP_SECS) against
#              a freshly started server; a side stops at its first failing step.
#
# Per step and side: SIPp (bench/scenarios/register_auth.xml for the engine; the anchor's own
# register_auth.xml, the same message flow, for Kamailio) drives 10,000 users (100000..109999, password
# pw<user>): REGISTER -> 401 -> REGISTER+Authorization -> 200.
#   PASS = every registration succeeded, 0 failed, 0 retransmissions, achieved rate >= 97 % of offered.
#   CPU  = utime+stime of the server's processes from /proc/<pid>/stat before/after SIPp, as % of one core,
#          and as microseconds of CPU per registration.
# The Kamailio side is ../shared/anchors/bench.sh reg-auth (called, not copied); the engine side reuses the
# helpers of ../shared/anchors/lib/common.sh. Ends with a markdown table for bench/RESULTS.md.
#
# env: STEP_SECS (20)  USERS_N (10000)  SIDES ("engine kamailio")  RETRY (0: re-run a failing step N times)
#      ENGINE_PORT (5072)  ENGINE_UAC_PORT (5082)  KAM_PORT (5070)  UAC_PORT (5080)  SIPP_BUF (4194304)
#      PBX (the repo's .venv/bin/pbx, else `pbx` on PATH)  SHARED (<repo>/../shared)
#      OUT (bench/out/register-<time>)  ENGINE_LOG_LEVEL (warning)  PYSPY (0; 1 = py-spy profile per step)
set -u -o pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${SHARED:-$(cd "$REPO/.." && pwd)/shared}"
ANCHORS="$SHARED/anchors"
[ -x "$ANCHORS/bench.sh" ] && [ -f "$ANCHORS/lib/common.sh" ] || {
	echo "ERROR: the Kamailio anchor is missing: expected $ANCHORS/bench.sh and lib/common.sh" >&2
	exit 2
}

STAMP=$(date +%Y%m%d-%H%M%S)
OUT="${OUT:-$REPO/bench/out/register-$STAMP}"
mkdir -p "$OUT/runs"
OUT="$(cd "$OUT" && pwd)"
export ANCHOR_WORK="$OUT/anchor"            # everything bench.sh writes goes under our run directory
export RESULTS_TSV="$OUT/kamailio-results.tsv"
PERF="$ANCHORS"
# shellcheck source=/dev/null
. "$ANCHORS/lib/common.sh"                  # HOST, cpu_ticks, proc_tree, stop_tree, sipp_stat, pct, log, die ...

STEP_SECS=${STEP_SECS:-20}
USERS_N=${USERS_N:-10000}
export USERS_N
SIDES=${SIDES:-"engine kamailio"}
RETRY=${RETRY:-0}
ENGINE_PORT=${ENGINE_PORT:-5072}
ENGINE_UAC_PORT=${ENGINE_UAC_PORT:-5082}
SIPP_BUF=${SIPP_BUF:-4194304}
ENGINE_LOG_LEVEL=${ENGINE_LOG_LEVEL:-warning}
PYSPY=${PYSPY:-0}
SCENARIO="$REPO/bench/scenarios/register_auth.xml"
if [ $# -gt 0 ]; then RATES=("$@"); else RATES=(1000 2000 3000 4000 5000 6000 8000 10000 12000 15000 17500 20000); fi

if [ -z "${PBX:-}" ]; then
	if [ -x "$REPO/.venv/bin/pbx" ]; then PBX="$REPO/.venv/bin/pbx"; else PBX="$(command -v pbx || true)"; fi
fi
command -v sipp >/dev/null || die "sipp is not installed (apt-get install sip-tester)"
[ -x /usr/bin/time ] || die "/usr/bin/time is not installed (apt-get install time)"
case " $SIDES " in *" engine "*) [ -n "$PBX" ] && [ -x "$PBX" ] || die "no pbx executable (set PBX= or pip install .)" ;; esac
case " $SIDES " in *" kamailio "*) command -v kamailio >/dev/null || die "kamailio is not installed ($ANCHORS/setup.sh)" ;; esac

ENGINE_PID="" ENGINE_UAC_PID="" PYSPY_PID=""
cleanup() {
	stop_tree "$ENGINE_UAC_PID" "sipp (engine)"
	stop_pid "$PYSPY_PID" "py-spy"
	STOP_WAIT=15 stop_pid "$ENGINE_PID" "pbx serve"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------ engine side
engine_prepare() {
	local users="$OUT/users.csv" company="$OUT/company.yaml"
	python3 - "$users" "$company" "$USERS_N" <<-'EOF'
		import sys
		users, company, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
		with open(users, "w") as f:
		    f.write("SEQUENTIAL\n")
		    for u in range(100000, 100000 + n):
		        f.write(f"{u};pw{u};[authentication username={u} password=pw{u}]\n")
		with open(company, "w") as f:
		    f.write("version: 1\ncompany:\n  name: Bench GmbH\n  sip_realm: perf.test\n")
		    f.write("  timezone: Europe/Berlin\n  country: DE\nusers:\n")
		    for u in range(100000, 100000 + n):
		        f.write(f"  - {{first_name: Load, last_name: U{u}, extension: '{u}', sip_password: pw{u}}}\n")
	EOF
	log "engine: importing $USERS_N users into $OUT/engine-template"
	"$PBX" import "$company" --data-dir "$OUT/engine-template" >"$OUT/import.log" 2>&1 ||
		{ cat "$OUT/import.log" >&2; die "pbx import failed"; }
}

ENGINE_LINE=""
engine_step() { # RATE -> 0 if PASS; sets ENGINE_LINE
	local rate=$1 calls=$(($1 * STEP_SECS)) outd="$OUT/runs/engine_r$1_$(date +%H%M%S)"
	mkdir -p "$outd"
	rm -rf "$OUT/engine-data"
	cp -a "$OUT/engine-template" "$OUT/engine-data"
	udp_port_free "$ENGINE_PORT" || die "udp port $ENGINE_PORT busy"
	udp_port_free "$ENGINE_UAC_PORT" || die "udp port $ENGINE_UAC_PORT busy"
	"$PBX" serve --data-dir "$OUT/engine-data" --sip "$HOST:$ENGINE_PORT" --log-level "$ENGINE_LOG_LEVEL" --rate-limit 0 --overload-cpu 0 \
		>"$outd/server.log" 2>&1 &
	ENGINE_PID=$!
	wait_udp_port "$ENGINE_PORT" 30 || { tail -20 "$outd/server.log" >&2; die "pbx serve did not start"; }
	sleep 1
	kill -0 "$ENGINE_PID" 2>/dev/null || { tail -20 "$outd/server.log" >&2; die "pbx serve exited"; }
	check_idle
	local srv_pids t0 s0 t1 s1 uac_rc
	srv_pids=$(proc_tree "$ENGINE_PID" | tr '\n' ' ')
	if [ "$PYSPY" = 1 ] && command -v py-spy >/dev/null; then
		py-spy record --pid "$ENGINE_PID" --duration "$STEP_SECS" --rate 250 --nonblocking \
			-o "$outd/profile.svg" >"$outd/py-spy.log" 2>&1 &
		PYSPY_PID=$!
	fi
	log "engine r=$rate: pbx serve pid [$srv_pids] -> sipp -r $rate -m $calls"
	t0=$(now_ns)
	s0=$(cpu_ticks $srv_pids)
	(cd "$outd" && exec /usr/bin/time -f "%U %S %e" -o "$outd/uac.time" \
		sipp -sf "$SCENARIO" -inf "$OUT/users.csv" -i "$HOST" -p "$ENGINE_UAC_PORT" -mp 18000 \
		-buff_size "$SIPP_BUF" "$HOST:$ENGINE_PORT" -r "$rate" -m "$calls" -timeout "$((STEP_SECS + 60))s" \
		-recv_timeout 10000 -nostdin -trace_stat -stf "$outd/uac.csv" -fd 1 -trace_rtt -rtt_freq 100 \
		-trace_err -trace_counts >"$outd/uac.out" 2>&1) &
	ENGINE_UAC_PID=$!
	local deadline=$((SECONDS + STEP_SECS + 90))
	while kill -0 "$ENGINE_UAC_PID" 2>/dev/null; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			log "engine r=$rate: sipp still running past its deadline; stopping it"
			stop_tree "$ENGINE_UAC_PID" "sipp (engine)"
			break
		fi
		sleep 0.5
	done
	wait "$ENGINE_UAC_PID"
	uac_rc=$?
	ENGINE_UAC_PID=""
	t1=$(now_ns)
	s1=$(cpu_ticks $srv_pids)
	local srv_drops
	srv_drops=$(awk -v p="$(printf '0100007F:%04X' "$ENGINE_PORT")" '$2 == p { print $NF; f = 1 } END { if (!f) print 0 }' /proc/net/udp)
	if [ -n "$PYSPY_PID" ]; then wait "$PYSPY_PID" 2>/dev/null; PYSPY_PID=""; fi
	kill -TERM "$ENGINE_PID" 2>/dev/null
	local i srv_rc=""
	for ((i = 0; i < 150; i++)); do kill -0 "$ENGINE_PID" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$ENGINE_PID" 2>/dev/null; then
		log "pbx serve did not exit within 15 s of SIGTERM; killing it"
		kill -KILL "$ENGINE_PID" 2>/dev/null
		srv_rc=killed
	fi
	wait "$ENGINE_PID" 2>/dev/null
	local wrc=$?
	[ -n "$srv_rc" ] || srv_rc=$wrc
	ENGINE_PID=""
	local aors
	aors=$("$PBX" reg list --data-dir "$OUT/engine-data" --json 2>/dev/null |
		python3 -c 'import json,sys; print(len({r["aor"] for r in json.load(sys.stdin)}))' 2>/dev/null || echo "?")

	local rtt u ok failed retrans elapsed achieved cpu us verdict
	rtt=$(ls "$outd"/*_rtt.csv 2>/dev/null | head -1)
	u=$(sipp_stat "$outd/uac.csv" $rtt)
	get() { echo "$u" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
	ok=$(get ok); failed=$(get failed); retrans=$(get retrans); elapsed=$(get elapsed_s)
	achieved=$(awk -v n="${ok:-0}" -v e="${elapsed:-0}" 'BEGIN { printf "%.1f", (e > 0 ? n / e : 0) }')
	cpu=$(pct $((s1 - s0)) $((t1 - t0)))
	us=$(awk -v t=$((s1 - s0)) -v hz="$CLK_TCK" -v n="${ok:-0}" 'BEGIN { printf "%.0f", (n > 0 ? 1e6 * t / hz / n : 0) }')
	verdict=PASS
	[ "${ok:-0}" -eq "$calls" ] || verdict=FAIL
	[ "${failed:-1}" -eq 0 ] && [ "${retrans:-1}" -eq 0 ] || verdict=FAIL
	awk -v a="$achieved" -v r="$rate" 'BEGIN { exit !(a >= 0.97 * r) }' || verdict="FAIL(rate)"
	[ "$uac_rc" -eq 0 ] || [ "$verdict" != PASS ] || verdict="FAIL(rc=$uac_rc)"
	[ "$srv_rc" = 0 ] || verdict="$verdict,exit=$srv_rc"
	grep -q Traceback "$outd/server.log" && verdict="$verdict,Traceback"
	ENGINE_LINE="engine	$rate	$calls	${ok:-0}	${failed:--}	${retrans:--}	$achieved	$cpu	$us	$(get rt_p99_ms)	$srv_drops	$aors	$verdict	$outd"
	echo "$ENGINE_LINE" >>"$OUT/steps.tsv"
	echo "engine rate=$rate calls=$calls ok=$ok failed=$failed retrans=$retrans achieved=$achieved/s p99=$(get rt_p99_ms)ms server_cpu=$cpu% us_per_reg=$us udp_drops(server)=$srv_drops aors=$aors exit=$srv_rc => $verdict"
	[ "$verdict" = PASS ]
}

# ------------------------------------------------------------------ Kamailio side (the anchor's bench.sh)
kamailio_step() { # RATE -> 0 if PASS
	local rate=$1 line kv
	line=$("$ANCHORS/bench.sh" reg-auth "$rate" "$STEP_SECS" 2>>"$OUT/kamailio-bench.log" | tail -1)
	local rc=$?
	echo "$line"
	kv() { echo "$line" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
	local ok failed retrans achieved cpu us verdict
	ok=$(kv ok); failed=$(kv failed); retrans=$(kv retrans)
	achieved=$(kv achieved | sed 's:/s$::'); cpu=$(kv server_cpu | tr -d '%')
	us=$(awk -v c="${cpu:-0}" -v a="${achieved:-0}" 'BEGIN { printf "%.0f", (a > 0 ? c * 1e4 / a : 0) }')
	verdict=$(echo "$line" | sed -n 's/.*=> //p')
	[ -n "$verdict" ] || verdict="FAIL(no result; see $OUT/kamailio-bench.log)"
	echo "kamailio	$rate	$((rate * STEP_SECS))	${ok:-0}	${failed:--}	${retrans:--}	${achieved:-0}	${cpu:-0}	$us	$(kv p99 | sed 's/ms$//')	-	$(kv aors)	$verdict	$ANCHOR_WORK/results" >>"$OUT/steps.tsv"
	[ "$rc" -eq 0 ] && [ "$verdict" = PASS ]
}

run_step() { # SIDE RATE -> 0 if PASS (with RETRY re-runs)
	local side=$1 rate=$2 try
	for ((try = 0; try <= RETRY; try++)); do
		sleep 2
		"${side}_step" "$rate" && return 0
		[ "$try" -lt "$RETRY" ] && log "$side r=$rate failed; retrying"
	done
	return 1
}

# ------------------------------------------------------------------ main
: >"$OUT/steps.tsv"
log "output in $OUT; sides: $SIDES; rates: ${RATES[*]}; ${STEP_SECS}s per step; $USERS_N users"
ENGINE_ON=0 KAM_ON=0
case " $SIDES " in *" engine "*) ENGINE_ON=1; engine_prepare ;; esac
case " $SIDES " in *" kamailio "*) KAM_ON=1 ;; esac
ENGINE_BEST=0 KAM_BEST=0
for rate in "${RATES[@]}"; do
	[ "$ENGINE_ON" = 1 ] || [ "$KAM_ON" = 1 ] || break
	if [ "$ENGINE_ON" = 1 ]; then
		if run_step engine "$rate"; then ENGINE_BEST=$rate; else ENGINE_ON=0; ENGINE_FAIL=$rate; fi
	fi
	if [ "$KAM_ON" = 1 ]; then
		if run_step kamailio "$rate"; then KAM_BEST=$rate; else KAM_ON=0; KAM_FAIL=$rate; fi
	fi
done

# ------------------------------------------------------------------ report
python3 - "$OUT/steps.tsv" "$ENGINE_BEST" "$KAM_BEST" "${ENGINE_FAIL:-none}" "${KAM_FAIL:-none}" "$STEP_SECS" \
	"$USERS_N" "$SIDES" >"$OUT/RESULTS.md" <<-'EOF'
	import sys
	path, e_best, k_best, e_fail, k_fail, secs, users, sides = sys.argv[1:9]
	rows = [line.rstrip("\n").split("\t") for line in open(path) if line.strip()]
	by = {}
	for r in rows:
	    by.setdefault(int(r[1]), {})[r[0]] = r  # the last try of a step wins
	def cell(r):
	    if r is None:
	        return ["", "", "", "", ""]
	    return [r[12], f"{r[3]}/{r[4]}/{r[5]}", r[6], r[7], r[8]]
	print(f"REGISTER + digest auth, {users} users, {secs} s per step, SIPp on the same box "
	      "(PASS = all registered, 0 failed, 0 retransmissions, >= 97 % of the offered rate).\n")
	print("| offered/s | engine | ok/failed/retrans | achieved/s | CPU % of a core | µs CPU/reg "
	      "| Kamailio | ok/failed/retrans | achieved/s | CPU % of a core | µs CPU/reg |")
	print("|---|---|---|---|---|---|---|---|---|---|---|")
	for rate in sorted(by):
	    print("| " + " | ".join([str(rate), *cell(by[rate].get("engine")), *cell(by[rate].get("kamailio"))]) + " |")
	e, k = int(e_best), int(k_best)
	print()
	if "engine" in sides.split():
	    print(f"- engine: highest clean rate **{e}/s** (first failing step: {e_fail})")
	if "kamailio" in sides.split():
	    print(f"- Kamailio 5.6 (2 children): highest clean rate **{k}/s** (first failing step: {k_fail})")
	if e and k:
	    print(f"- ratio engine/Kamailio: **{e / k:.2f}x**")
	both = [rate for rate in sorted(by) if all(s in by[rate] and by[rate][s][12] == "PASS" for s in ("engine", "kamailio"))]
	if both:
	    r = both[-1]
	    eu, ku = float(by[r]["engine"][8]), float(by[r]["kamailio"][8])
	    ratio = f" ({eu / ku:.1f}x)" if ku else ""
	    print(f"- CPU per registration at {r}/s (the highest rate both held): engine {eu:.0f} µs, "
	          f"Kamailio {ku:.0f} µs{ratio}")
	EOF
echo
cat "$OUT/RESULTS.md"
echo
log "per-step files: $OUT/runs (engine), $ANCHOR_WORK/results/runs (Kamailio); table: $OUT/RESULTS.md"
