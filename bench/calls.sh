#!/usr/bin/env bash
# Calls through pbx-engine (B2BUA), side by side with the anchors (Kamailio stateful proxy, sippy B2BUA), in one run.
#
# usage: bench/calls.sh [PART ...]          PART: cps hold profile (default: all three, in this order)
#        QUICK=1 bench/calls.sh             10 s steps, short ladders, small holds (~5 min instead of ~14)
#
# Call flow (every side): SIPp UAC -> server -> SIPp UAS, INVITE/100/180/200/ACK, hold (-d), BYE/200, SDP carried,
# the anchors' own scenarios (../shared/anchors/scenarios/uac_call.xml, uas_call.xml). For the engine the UAC
# dials the DID +4930555000 from 127.0.0.1, a trunk source (a trusted carrier call: no digest), the DID routes to
# extension 100, and line 100 is registered with Contact <sip:100@127.0.0.1:UAS_PORT> (the SIPp UAS) before
# each run. Sides:
#   engine            pbx serve, company.media_release_networks [127.0.0.0/8]: media anchoring off (the SDP keeps
#                     the phones' addresses; the engine rewrites only the origin)
#   engine-anchored   the same without media release: every call opens an RTP relay session (4 sockets)
#   kamailio          ../shared/anchors/bench.sh call-kamailio (tm + record-route, 2 children, -m 1024)
#   sippy             ../shared/anchors/bench.sh call-sippy   (sippy 2.5.0 b2bua, no RTP proxy)
# The anchor sides are run by the anchors' bench.sh (called, not copied); the engine side reuses the helpers
# of ../shared/anchors/lib/common.sh and the same SIPp flags, so the figures compare.
#
# Parts:
#   cps      step the call rate (no hold), STEP_SECS per step, a fresh server per step; a side stops at its first
#            step that fails (after RETRY re-runs), then REFINE bisections. Steps interleave the sides round by
#            round, so that noise from other jobs on the box spreads over all of them.
#            PASS = every call completed, 0 failed calls and 0 retransmissions on either SIPp side, achieved
#            rate >= 97 % of offered (the anchors' rule); for the engine also no Traceback and exit status 0.
#   hold     long calls: the most concurrent calls held and memory per call = (peak PSS during the run - PSS
#            of the idle server) / peak concurrent calls. The anchors' idle PSS comes from a 5-call run.
#            The engine-anchored hold also measures the RTP relay: once its calls are up, bench/lib/rtpgen.py
#            sends 100 packets/s per call (50 each way, 172 bytes, symmetric) through the engine's relay
#            sockets in steps of RELAY_CALLS calls, RELAY_SECS each, and reports packets/s relayed, loss, one-way
#            latency through the relay, and the engine's CPU per relayed packet.
#   profile  one more engine step at the highest clean rate of this run (none clean: the first failing rate; or
#            PROFILE_RATE) under py-spy (--nonblocking, 100 Hz, raw collapsed stacks), summarised by
#            bench/lib/pyspy_top.py into profile-top.md.
#
# CPU = utime+stime of the server's processes from /proc/PID/stat before/after SIPp, % of one core; µs CPU
# per call = CPU % * 10^4 / achieved calls/s. Memory = PSS from /proc/PID/smaps_rollup, sampled every second.
# Results: $OUT/steps.tsv (one line per run), $OUT/relay.jsonl, $OUT/RESULTS.md (tables for bench/RESULTS.md).
#
# env: STEP_SECS (20; QUICK 10)  RETRY (1; QUICK 0)  REFINE (0)  SIDES ("engine engine-anchored kamailio sippy")
#      RATES_ENGINE RATES_ANCHORED RATES_KAMAILIO RATES_SIPPY   (increasing cps ladders, see below)
#      HOLD_ENGINE HOLD_ANCHORED HOLD_KAMAILIO HOLD_SIPPY       ("RATE SECS HOLD_MS" of each side's hold run)
#      RELAY_CALLS (comma list)  RELAY_SECS (4; QUICK 3)  PROFILE_RATE  PYSPY (py-spy binary)
#      RTPGEN (auto: the C send/receive loop bench/lib/rtpblast.c when cc exists, else py; c; py)
#      ENGINE_PORT (5073)  ENGINE_UAC_PORT (5083)  ENGINE_UAS_PORT (5093)  SIPP_BUF (4194304)
#      PBX (.venv/bin/pbx)  PY (.venv/bin/python)  SHARED (<repo>/../shared)  SIPPY_VENV (/tmp/pbx-anchors/venv-sippy)
#      OUT (bench/out/calls-<time>)  ENGINE_LOG_LEVEL (warning)
#      RELAY_PROFILE (0; 1 = py-spy the engine during the RTP steps -> relay-profile-top.md)
#      GCWATCH (1: log the engine's garbage-collector pauses per run to runs/<run>/gc.json with gc.callbacks, see
#               bench/lib/gcwatch; 0: run pbx serve untouched)
set -u -o pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${SHARED:-$(cd "$REPO/.." && pwd)/shared}"
ANCHORS="$SHARED/anchors"
[ -x "$ANCHORS/bench.sh" ] && [ -f "$ANCHORS/lib/common.sh" ] || {
	echo "ERROR: the anchors are missing: expected $ANCHORS/bench.sh and lib/common.sh" >&2
	exit 2
}

STAMP=$(date +%Y%m%d-%H%M%S)
OUT="${OUT:-$REPO/bench/out/calls-$STAMP}"
mkdir -p "$OUT/runs"
OUT="$(cd "$OUT" && pwd)"
export ANCHOR_WORK="$OUT/anchor"            # everything the anchors' bench.sh writes goes under our run directory
export RESULTS_TSV="$OUT/anchor-results.tsv"
export SIPPY_VENV="${SIPPY_VENV:-/tmp/pbx-anchors/venv-sippy}"   # where ../shared/anchors/setup.sh puts it
PERF="$ANCHORS"
# shellcheck source=/dev/null
. "$ANCHORS/lib/common.sh"                  # HOST, cpu_ticks, proc_tree, stop_tree, stop_pid, pss_kb, sipp_stat, pct, log, die

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
	STEP_SECS=${STEP_SECS:-10}
	RETRY=${RETRY:-0}
	RATES_ENGINE=${RATES_ENGINE:-"600 900 1200"}
	RATES_ANCHORED=${RATES_ANCHORED:-"400 700"}
	RATES_KAMAILIO=${RATES_KAMAILIO:-"1750"}
	RATES_SIPPY=${RATES_SIPPY:-"200"}
	HOLD_ENGINE=${HOLD_ENGINE:-"500 10 10000"}
	HOLD_ANCHORED=${HOLD_ANCHORED:-"100 10 40000"}
	HOLD_KAMAILIO=${HOLD_KAMAILIO:-"500 10 10000"}
	HOLD_SIPPY=${HOLD_SIPPY:-"60 10 20000"}
	RELAY_CALLS=${RELAY_CALLS:-"250,500,750"}
	RELAY_SECS=${RELAY_SECS:-3}
else
	STEP_SECS=${STEP_SECS:-20}
	RETRY=${RETRY:-1}
	RATES_ENGINE=${RATES_ENGINE:-"600 800 1000 1100 1200 1300 1400 1600"}
	RATES_ANCHORED=${RATES_ANCHORED:-"400 600 800 900 1000 1100"}
	RATES_KAMAILIO=${RATES_KAMAILIO:-"1750 2500 3000 3500"}
	RATES_SIPPY=${RATES_SIPPY:-"150 200 250 300"}
	HOLD_ENGINE=${HOLD_ENGINE:-"500 20 20000"}       # 10,000 concurrent calls, as the Kamailio anchor
	HOLD_ANCHORED=${HOLD_ANCHORED:-"100 15 64000"}   # 1,500 anchored calls (6,000 relay sockets), RTP through them
	HOLD_KAMAILIO=${HOLD_KAMAILIO:-"500 20 20000"}
	HOLD_SIPPY=${HOLD_SIPPY:-"60 30 40000"}          # 1,800 concurrent (sippy stalls with thousands: anchors README)
	RELAY_CALLS=${RELAY_CALLS:-"250,500,750,1000,1500"}
	RELAY_SECS=${RELAY_SECS:-4}
fi
REFINE=${REFINE:-0}
SIDES=${SIDES:-"engine engine-anchored kamailio sippy"}
ENGINE_PORT=${ENGINE_PORT:-5073}
ENGINE_UAC_PORT=${ENGINE_UAC_PORT:-5083}
ENGINE_UAS_PORT=${ENGINE_UAS_PORT:-5093}
SIPP_BUF=${SIPP_BUF:-4194304}
ENGINE_LOG_LEVEL=${ENGINE_LOG_LEVEL:-warning}
GCWATCH=${GCWATCH:-1}
RTPGEN=${RTPGEN:-auto}
RELAY_PROFILE=${RELAY_PROFILE:-0}
DID="+4930555000"
RTP_RANGE="20000-29999"                     # pbx serve's default RTP port range (engine/server.py)
if [ $# -gt 0 ]; then PARTS=" $* "; else PARTS=" cps hold profile "; fi

if [ -z "${PBX:-}" ]; then
	if [ -x "$REPO/.venv/bin/pbx" ]; then PBX="$REPO/.venv/bin/pbx"; else PBX="$(command -v pbx || true)"; fi
fi
if [ -z "${PY:-}" ]; then
	if [ -x "$REPO/.venv/bin/python" ]; then PY="$REPO/.venv/bin/python"; else PY="$(command -v python3)"; fi
fi
if [ -z "${PYSPY:-}" ]; then
	if [ -x "$REPO/.venv/bin/py-spy" ]; then PYSPY="$REPO/.venv/bin/py-spy"; else PYSPY="$(command -v py-spy || true)"; fi
fi
has_side() { case " $SIDES " in *" $1 "*) return 0 ;; esac; return 1; }
command -v sipp >/dev/null || die "sipp is not installed ($ANCHORS/setup.sh)"
[ -x /usr/bin/time ] || die "/usr/bin/time is not installed ($ANCHORS/setup.sh)"
if has_side engine || has_side engine-anchored; then
	[ -n "$PBX" ] && [ -x "$PBX" ] || die "no pbx executable (set PBX= or pip install -e .)"
fi
if has_side kamailio; then command -v kamailio >/dev/null || die "kamailio is not installed ($ANCHORS/setup.sh)"; fi
if has_side sippy; then [ -x "$SIPPY_VENV/bin/b2bua" ] || die "no sippy venv at $SIPPY_VENV ($ANCHORS/setup.sh)"; fi

ENGINE_PID="" UAC_PID="" UAS_PID="" SPY_PID="" GEN_PID=""
cleanup() {
	stop_pid "$GEN_PID" "rtpgen"
	stop_pid "$SPY_PID" "py-spy"
	stop_tree "$UAC_PID" "sipp uac (engine)"
	stop_tree "$UAS_PID" "sipp uas (engine)"
	STOP_WAIT=15 stop_pid "$ENGINE_PID" "pbx serve"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sys_idle_ticks() { awk '/^cpu / { print $5+$6 }' /proc/stat; }
sock_drops() { awk -v p="$(printf '0100007F:%04X' "$1")" '$2 == p { print $NF; f = 1 } END { if (!f) print 0 }' /proc/net/udp; }
NCPU=$(nproc)
kv() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; } # kv "k=v k=v" KEY

# ------------------------------------------------------------------ engine side
engine_prepare() { # the two data-dir templates: media released / anchored
	local mode
	for mode in release anchored; do
		{
			echo "version: 1"
			echo "company:"
			echo "  name: Bench GmbH"
			echo "  sip_realm: perf.test"
			echo "  timezone: Europe/Berlin"
			echo "  country: DE"
			echo "  area_code: \"30\""
			[ "$mode" = release ] && echo "  media_release_networks: [\"127.0.0.0/8\"]   # both SIPp ends are here: no relay"
			echo "users:"
			echo "  - {first_name: Bench, last_name: Callee, extension: \"100\", sip_password: pw100-bench}"
			echo "numbers:"
			echo "  - number: \"$DID\""
			echo "    route: {kind: extension, target: \"100\"}"
			echo "trunks:"
			echo "  - name: sipp-uac        # INVITEs from 127.0.0.1 are carrier calls (trusted by source, no digest)"
			echo "    sources: [\"$HOST\"]"
			echo "    host: $HOST"
			echo "    port: $ENGINE_UAC_PORT"
		} >"$OUT/company-$mode.yaml"
		"$PBX" import "$OUT/company-$mode.yaml" --data-dir "$OUT/engine-$mode" >"$OUT/import-$mode.log" 2>&1 ||
			{ cat "$OUT/import-$mode.log" >&2; die "pbx import failed"; }
	done
}

engine_register() { # register line 100 with its Contact at the SIPp UAS
	"$PY" - "$REPO" "$HOST" "$ENGINE_PORT" "$ENGINE_UAS_PORT" <<-'EOF'
		import sys
		repo, host, port, uas = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
		sys.path.insert(0, f"{repo}/tests/integration")
		from sipclient import SipClient
		with SipClient((host, port)) as c:
		    r = c.register("100", "pw100-bench", contact=f"<sip:100@{host}:{uas}>", expires=3600)
		    if r.status != 200:
		        sys.exit(f"REGISTER of line 100 answered {r.status}")
	EOF
}

ENGINE_RESULT=""
# engine_run SIDE PART RATE SECS HOLD_MS [RELAY_CALLS] -> 0 if PASS; appends to steps.tsv, sets ENGINE_RESULT
engine_run() {
	local side=$1 part=$2 rate=$3 secs=$4 hold=$5 relay=${6:-}
	local mode=release calls=$(($3 * $4)) outd
	[ "$side" = engine-anchored ] && mode=anchored
	outd="$OUT/runs/${side}_${part}_r${rate}_s${secs}_d${hold}_$(date +%H%M%S)"
	mkdir -p "$outd"
	rm -rf "$OUT/engine-data"
	cp -a "$OUT/engine-$mode" "$OUT/engine-data"
	local p
	for p in "$ENGINE_PORT" "$ENGINE_UAC_PORT" "$ENGINE_UAS_PORT"; do udp_port_free "$p" || die "udp port $p busy"; done
	if [ "$GCWATCH" = 1 ]; then # log the cyclic GC's pauses (bench/lib/gcwatch/sitecustomize.py) to gc.json
		PYTHONPATH="$REPO/bench/lib/gcwatch${PYTHONPATH:+:$PYTHONPATH}" GCWATCH_FILE="$outd/gc.json" \
			"$PBX" serve --data-dir "$OUT/engine-data" --sip "$HOST:$ENGINE_PORT" --log-level "$ENGINE_LOG_LEVEL" --rate-limit 0 --overload-cpu 0 \
			>"$outd/server.log" 2>&1 &
	else
		"$PBX" serve --data-dir "$OUT/engine-data" --sip "$HOST:$ENGINE_PORT" --log-level "$ENGINE_LOG_LEVEL" --rate-limit 0 --overload-cpu 0 \
			>"$outd/server.log" 2>&1 &
	fi
	ENGINE_PID=$!
	wait_udp_port "$ENGINE_PORT" 30 || { tail -20 "$outd/server.log" >&2; die "pbx serve did not start"; }
	sleep 1
	kill -0 "$ENGINE_PID" 2>/dev/null || { tail -20 "$outd/server.log" >&2; die "pbx serve exited"; }
	engine_register >"$outd/register.log" 2>&1 || { cat "$outd/register.log" >&2; die "could not register line 100"; }
	(cd "$outd" && exec /usr/bin/time -f "%U %S %e" -o "$outd/uas.time" \
		sipp -sf "$ANCHORS/scenarios/uas_call.xml" -i "$HOST" -p "$ENGINE_UAS_PORT" -mp 16100 -buff_size "$SIPP_BUF" \
		-m "$calls" -timeout "$((secs + hold / 1000 + 90))s" -recv_timeout "$((hold + 10000))" -nostdin \
		-trace_stat -stf "$outd/uas.csv" -fd 1 -trace_err -trace_counts >"$outd/uas.out" 2>&1) &
	UAS_PID=$!
	wait_udp_port "$ENGINE_UAS_PORT" 10 || die "sipp uas did not start"
	check_idle
	local srv_pids pss_base
	srv_pids=$(proc_tree "$ENGINE_PID" | tr '\n' ' ')
	pss_base=$(pss_kb $srv_pids)
	if [ "$part" = profile ] && [ -n "$PYSPY" ]; then
		"$PYSPY" record --pid "$ENGINE_PID" --duration "$secs" --rate 100 --nonblocking --format raw \
			-o "$outd/profile.txt" >"$outd/py-spy.log" 2>&1 &
		SPY_PID=$!
	fi
	log "$side $part r=$rate s=$secs hold=${hold}ms: pbx serve pid [$srv_pids] -> sipp -r $rate -m $calls"
	local t0 s0 y0 t1 s1 y1 uac_rc
	t0=$(now_ns); s0=$(cpu_ticks $srv_pids); y0=$(sys_idle_ticks)
	(cd "$outd" && exec /usr/bin/time -f "%U %S %e" -o "$outd/uac.time" \
		sipp -sf "$ANCHORS/scenarios/uac_call.xml" -s "$DID" -d "$hold" -i "$HOST" -p "$ENGINE_UAC_PORT" -mp 17100 \
		-buff_size "$SIPP_BUF" "$HOST:$ENGINE_PORT" -r "$rate" -m "$calls" -timeout "$((secs + hold / 1000 + 60))s" \
		-recv_timeout 10000 -nostdin -trace_stat -stf "$outd/uac.csv" -fd 1 -trace_rtt -rtt_freq 100 \
		-trace_err -trace_counts >"$outd/uac.out" 2>&1) &
	UAC_PID=$!
	# SIPp's -timeout only stops new calls: enforce a hard deadline; sample PSS every second meanwhile
	local pss_max=0 r deadline=$((SECONDS + secs + hold / 1000 + 120)) relay_at=$((SECONDS + secs + 3))
	while kill -0 "$UAC_PID" 2>/dev/null; do
		r=$(pss_kb $srv_pids); [ "$r" -gt "$pss_max" ] && pss_max=$r
		if [ -n "$relay" ] && [ -z "$GEN_PID" ] && [ "$SECONDS" -ge "$relay_at" ]; then
			log "$side: $(ss -Hlunp | grep -c "pid=$ENGINE_PID,") engine sockets open; RTP steps $relay calls x ${RELAY_SECS}s"
			python3 "$REPO/bench/lib/rtpgen.py" --pid "$ENGINE_PID" --calls "$relay" --seconds "$RELAY_SECS" \
				--ports "$RTP_RANGE" --host "$HOST" --generator "$RTPGEN" >"$outd/relay.jsonl" 2>"$outd/relay.err" &
			GEN_PID=$!
			if [ "$RELAY_PROFILE" = 1 ] && [ -n "$PYSPY" ]; then # the engine while it relays (all RTP steps)
				local nsteps
				nsteps=$(echo "$relay" | tr ',' '\n' | grep -c .)
				"$PYSPY" record --pid "$ENGINE_PID" --duration "$((2 + nsteps * (RELAY_SECS + 3)))" --rate 100 \
					--nonblocking --format raw -o "$outd/relay-profile.txt" >"$outd/py-spy.log" 2>&1 &
				SPY_PID=$!
			fi
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			log "$side: sipp uac still running past its deadline; stopping it"
			stop_tree "$UAC_PID" "sipp uac (engine)"
			break
		fi
		sleep 1
	done
	wait "$UAC_PID"
	uac_rc=$?
	UAC_PID=""
	t1=$(now_ns); s1=$(cpu_ticks $srv_pids); y1=$(sys_idle_ticks)
	if [ -n "$GEN_PID" ]; then
		stop_pid "$GEN_PID" "rtpgen"; wait "$GEN_PID" 2>/dev/null; GEN_PID=""
		cat "$outd/relay.jsonl" >>"$OUT/relay.jsonl"
	fi
	if [ -n "$SPY_PID" ]; then
		for ((p = 0; p < 100; p++)); do kill -0 "$SPY_PID" 2>/dev/null || break; sleep 0.2; done
		stop_pid "$SPY_PID" "py-spy"; wait "$SPY_PID" 2>/dev/null; SPY_PID=""
		[ -s "$outd/relay-profile.txt" ] && python3 "$REPO/bench/lib/pyspy_top.py" "$outd/relay-profile.txt" 25 \
			>"$OUT/relay-profile-top.md"
	fi
	local srv_drops uas_drops
	srv_drops=$(sock_drops "$ENGINE_PORT"); uas_drops=$(sock_drops "$ENGINE_UAS_PORT")
	# the UAS ends by itself 4 s after its last BYE
	for ((p = 0; p < 150; p++)); do kill -0 "$UAS_PID" 2>/dev/null || break; sleep 0.1; done
	stop_tree "$UAS_PID" "sipp uas (engine)"; wait "$UAS_PID" 2>/dev/null; UAS_PID=""
	kill -TERM "$ENGINE_PID" 2>/dev/null
	local srv_rc=""
	for ((p = 0; p < 150; p++)); do kill -0 "$ENGINE_PID" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$ENGINE_PID" 2>/dev/null; then
		log "pbx serve did not exit within 15 s of SIGTERM; killing it"
		kill -KILL "$ENGINE_PID" 2>/dev/null
		srv_rc=killed
	fi
	wait "$ENGINE_PID" 2>/dev/null
	local wrc=$?
	[ -n "$srv_rc" ] || srv_rc=$wrc
	ENGINE_PID=""

	local rtt u s ok failed retrans elapsed achieved cpu us verdict box uas_failed uas_retrans
	rtt=$(ls "$outd"/*_rtt.csv 2>/dev/null | head -1)
	u=$(sipp_stat "$outd/uac.csv" $rtt)
	s=""; [ -s "$outd/uas.csv" ] && s=$(sipp_stat "$outd/uas.csv")
	echo "$u" >"$outd/uac.summary"; echo "$s" >"$outd/uas.summary"
	ok=$(kv "$u" ok); failed=$(kv "$u" failed); retrans=$(kv "$u" retrans); elapsed=$(kv "$u" elapsed_s)
	uas_failed=$(kv "$s" failed); uas_retrans=$(kv "$s" retrans)
	achieved=$(awk -v n="${ok:-0}" -v e="${elapsed:-0}" -v h="$hold" 'BEGIN { t = e - h / 1000.0; printf "%.1f", (t > 0 ? n / t : 0) }')
	cpu=$(pct $((s1 - s0)) $((t1 - t0)))
	us=$(awk -v c="$cpu" -v a="$achieved" 'BEGIN { printf "%.0f", (a > 0 ? c * 1e4 / a : 0) }')
	box=$(awk -v i="$(pct $((y1 - y0)) $((t1 - t0)))" -v n="$NCPU" 'BEGIN { b = 100 * n - i; printf "%.1f", (b < 0 ? 0 : b) }')
	verdict=PASS
	[ "${ok:-0}" -eq "$calls" ] || verdict=FAIL
	[ "${failed:-1}" -eq 0 ] && [ "${retrans:-1}" -eq 0 ] || verdict=FAIL
	[ "${uas_failed:-1}" -eq 0 ] && [ "${uas_retrans:-1}" -eq 0 ] || verdict=FAIL
	awk -v a="$achieved" -v r="$rate" 'BEGIN { exit !(a >= 0.97 * r) }' || verdict="FAIL(rate)"
	[ "$uac_rc" -eq 0 ] || [ "$verdict" != PASS ] || verdict="FAIL(rc=$uac_rc)"
	[ "$srv_rc" = 0 ] || verdict="$verdict,exit=$srv_rc"
	grep -q Traceback "$outd/server.log" && verdict="$verdict,Traceback"
	printf '%s\n' "$side" "$part" "$rate" "$secs" "$hold" "$calls" "${ok:-0}" "${failed:--}" "${retrans:--}" \
		"${uas_failed:--}" "${uas_retrans:--}" "$achieved" "$cpu" "$us" "$(kv "$u" rt_avg_ms)" "$(kv "$u" rt_p99_ms)" \
		"$(kv "$u" cur_max)" "$pss_base" "$pss_max" "$box" "server:$srv_drops,uas:$uas_drops" "$verdict" "$outd" |
		paste -sd '\t' >>"$OUT/steps.tsv"
	ENGINE_RESULT="$side $part rate=$rate calls=$calls ok=$ok failed=$failed retrans=$retrans uas_failed=$uas_failed uas_retrans=$uas_retrans achieved=$achieved/s rt_avg=$(kv "$u" rt_avg_ms)ms p99=$(kv "$u" rt_p99_ms)ms max_conc=$(kv "$u" cur_max) server_cpu=$cpu% us_per_call=$us pss=${pss_base}->${pss_max}kB sys_cpu=$box%/200 udp_drops(server:$srv_drops,uas:$uas_drops) exit=$srv_rc => $verdict"
	echo "$ENGINE_RESULT"
	[ "$verdict" = PASS ]
}

# ------------------------------------------------------------------ anchor sides (the anchors' bench.sh)
# anchor_run SIDE PART RATE SECS HOLD_MS -> 0 if PASS
anchor_run() {
	local side=$1 part=$2 rate=$3 secs=$4 hold=$5 line rc
	line=$("$ANCHORS/bench.sh" "call-$side" "$rate" "$secs" "$hold" 2>>"$OUT/anchor-bench.log" | tail -1)
	rc=$?
	echo "$side $part $line"
	local ok failed retrans uas_failed uas_retrans achieved cpu us verdict pss box drops rundir
	ok=$(kv "$line" ok); failed=$(kv "$line" failed); retrans=$(kv "$line" retrans)
	uas_failed=$(kv "$line" uas_failed); uas_retrans=$(kv "$line" uas_retrans)
	achieved=$(kv "$line" achieved | sed 's:/s$::'); cpu=$(kv "$line" server_cpu | tr -d '%')
	pss=$(kv "$line" pss_max | sed 's/kB$//'); box=$(kv "$line" sys_cpu | sed 's:%/200$::')
	drops=$(kv "$line" udp_drops)
	us=$(awk -v c="${cpu:-0}" -v a="${achieved:-0}" 'BEGIN { printf "%.0f", (a > 0 ? c * 1e4 / a : 0) }')
	verdict=$(echo "$line" | sed -n 's/.*=> //p')
	[ -n "$verdict" ] || verdict="FAIL(no result; see $OUT/anchor-bench.log)"
	rundir=$(tail -1 "$RESULTS_TSV" 2>/dev/null | awk -F'\t' '{ print $NF }')
	printf '%s\n' "$side" "$part" "$rate" "$secs" "$hold" "$((rate * secs))" "${ok:-0}" "${failed:--}" "${retrans:--}" \
		"${uas_failed:--}" "${uas_retrans:--}" "${achieved:-0}" "${cpu:-0}" "$us" "$(kv "$line" rt_avg | sed 's/ms$//')" \
		"$(kv "$line" p99 | sed 's/ms$//')" "$(kv "$line" max_conc)" "-" "${pss:-0}" "${box:--}" "${drops:--}" "$verdict" \
		"$ANCHOR_WORK/results/$rundir" | paste -sd '\t' >>"$OUT/steps.tsv"
	[ "$rc" -eq 0 ] && [ "$verdict" = PASS ]
}

run_side() { # SIDE PART RATE SECS HOLD_MS [RELAY] -> 0 if PASS
	case "$1" in
	engine | engine-anchored) engine_run "$@" ;;
	kamailio | sippy) anchor_run "$1" "$2" "$3" "$4" "$5" ;;
	esac
}

cps_step() { # SIDE RATE -> 0 if PASS (with RETRY re-runs)
	local side=$1 rate=$2 try
	for ((try = 0; try <= RETRY; try++)); do
		sleep 2
		run_side "$side" cps "$rate" "$STEP_SECS" 0 && return 0
		[ "$try" -lt "$RETRY" ] && log "$side r=$rate failed; retrying"
	done
	return 1
}

ladder() { # SIDE -> its rates
	case "$1" in
	engine) echo "$RATES_ENGINE" ;;
	engine-anchored) echo "$RATES_ANCHORED" ;;
	kamailio) echo "$RATES_KAMAILIO" ;;
	sippy) echo "$RATES_SIPPY" ;;
	esac
}

# ------------------------------------------------------------------ main
touch "$OUT/steps.tsv" "$OUT/relay.jsonl"
log "output in $OUT; sides: $SIDES; parts:$PARTS; ${STEP_SECS}s per step"
{
	echo "date: $(date -Is)   host: $(hostname)   $(nproc) CPUs: $(lscpu | sed -n 's/^Model name: *//p')"
	echo "load before: $(cat /proc/loadavg)"
	echo "sipp: $(sipp -v 2>&1 | grep -m1 -o 'SIPp v[^ ]*')   kamailio: $(kamailio -v 2>/dev/null | head -1)"
	echo "engine: $(cd "$REPO" && git log -1 --format='%h %s' | cut -c1-80) (+ working tree: $(cd "$REPO" && git status --short | wc -l) changed paths)"
	echo "python: $("$PY" -V 2>&1)   sides: $SIDES   parts:$PARTS   step ${STEP_SECS}s   retry $RETRY   refine $REFINE"
	echo "ladders: engine [$RATES_ENGINE] anchored [$RATES_ANCHORED] kamailio [$RATES_KAMAILIO] sippy [$RATES_SIPPY]"
	echo "holds: engine [$HOLD_ENGINE] anchored [$HOLD_ANCHORED] kamailio [$HOLD_KAMAILIO] sippy [$HOLD_SIPPY]; relay steps [$RELAY_CALLS] x ${RELAY_SECS}s"
} >"$OUT/env.txt"
cat "$OUT/env.txt" >&2
if has_side engine || has_side engine-anchored; then engine_prepare; fi

declare -A BEST FAIL ACTIVE
SIDE_LIST=()
for side in engine engine-anchored kamailio sippy; do has_side "$side" && SIDE_LIST+=("$side"); done

if [[ $PARTS == *" cps "* ]]; then
	for side in "${SIDE_LIST[@]}"; do BEST[$side]=0; FAIL[$side]=none; ACTIVE[$side]=1; done
	for ((i = 0; ; i++)); do
		any=0
		for side in "${SIDE_LIST[@]}"; do
			[ "${ACTIVE[$side]}" = 1 ] || continue
			read -r -a rates <<<"$(ladder "$side")"
			[ "$i" -lt "${#rates[@]}" ] || { ACTIVE[$side]=0; continue; }
			any=1
			if cps_step "$side" "${rates[$i]}"; then BEST[$side]=${rates[$i]}; else FAIL[$side]=${rates[$i]}; ACTIVE[$side]=0; fi
		done
		[ "$any" = 1 ] || break
	done
	for side in "${SIDE_LIST[@]}"; do # bisect between the last clean and the first failing rate
		lo=${BEST[$side]} hi=${FAIL[$side]}
		for ((k = 0; k < REFINE; k++)); do
			[ "$hi" != none ] && [ "$lo" -gt 0 ] || break
			mid=$(((lo + hi) / 2))
			[ $((hi - lo)) -gt $((lo / 20 + 1)) ] || break
			if cps_step "$side" "$mid"; then lo=$mid; else hi=$mid; fi
		done
		BEST[$side]=$lo FAIL[$side]=$hi
		echo "$side	${BEST[$side]}	${FAIL[$side]}" >>"$OUT/best.tsv"
	done
fi

if [[ $PARTS == *" hold "* ]]; then
	for side in "${SIDE_LIST[@]}"; do
		case "$side" in
		engine) read -r hr hs hd <<<"$HOLD_ENGINE"; run_side engine hold "$hr" "$hs" "$hd" ;;
		engine-anchored)
			read -r hr hs hd <<<"$HOLD_ANCHORED"
			# the calls must stay up while the RTP steps run (idle 2 s + per step: warm-up, RELAY_SECS, drain)
			n=$(echo "$RELAY_CALLS" | tr ',' '\n' | grep -c .)
			need=$(((hs + 3 + 2 + n * (RELAY_SECS + 4) + 3) * 1000))
			[ "$hd" -ge "$need" ] || { log "anchored hold: ${hd} ms is too short for the RTP steps; using $need ms"; hd=$need; }
			run_side engine-anchored hold "$hr" "$hs" "$hd" "$RELAY_CALLS" ;;
		kamailio | sippy)
			anchor_run "$side" base 5 1 0 # the idle server's PSS (5 calls)
			case "$side" in kamailio) read -r hr hs hd <<<"$HOLD_KAMAILIO" ;; sippy) read -r hr hs hd <<<"$HOLD_SIPPY" ;; esac
			anchor_run "$side" hold "$hr" "$hs" "$hd" ;;
		esac
	done
fi

if [[ $PARTS == *" profile "* ]] && has_side engine; then
	if [ -z "$PYSPY" ]; then
		log "no py-spy (pip install py-spy into the venv): skipping the profile"
	else
		prate=${PROFILE_RATE:-${BEST[engine]:-0}}
		if [ "$prate" -eq 0 ]; then # no clean step: profile at the first failing rate (the limit), else the ladder's first
			read -r -a rates <<<"$RATES_ENGINE"
			prate=${FAIL[engine]:-none}
			[ "$prate" != none ] || prate=${rates[0]}
		fi
		if [ "$prate" -gt 0 ]; then
			sleep 2
			run_side engine profile "$prate" "$STEP_SECS" 0
			prof=$(ls -t "$OUT"/runs/engine_profile_*/profile.txt 2>/dev/null | head -1)
			[ -n "$prof" ] && python3 "$REPO/bench/lib/pyspy_top.py" "$prof" 25 >"$OUT/profile-top.md"
		else
			log "no clean engine rate in this run (set PROFILE_RATE=): skipping the profile"
		fi
	fi
fi

# ------------------------------------------------------------------ report
python3 "$REPO/bench/lib/calls_report.py" "$OUT" >"$OUT/RESULTS.md"
echo
cat "$OUT/RESULTS.md"
echo
log "per-run files: $OUT/runs (engine), $ANCHOR_WORK/results/runs (anchors); table: $OUT/RESULTS.md"
