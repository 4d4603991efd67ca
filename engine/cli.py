"""The ``pbx`` command line: run the engine and do the common admin steps on a data directory.

Commands (flags are a stable contract; ``pbx COMMAND --help`` documents each):
  pbx serve      --data-dir DIR --sip HOST:PORT [--http HOST:PORT|off] [--log-level LEVEL] [--digest ALGS]
                 [--log-format text|json]
                 [--rtp-ports FIRST-LAST] [--ring-timeout SECONDS] [--park-timeout SECONDS]
                 [--advertise ADDRESS] [--hot-desk-hours H]
                 [--smtp HOST:PORT] [--smtp-from ADDRESS] [--no-hold-music]
                 [--tls HOST:PORT] [--ws HOST:PORT] [--wss HOST:PORT] [--tls-cert FILE.pem --tls-key FILE.pem]
  pbx user add   --data-dir DIR --first F --last L [--email E] [--extension N] [--sip-password PW]
                 [--dial-permissions P,P...] [--json]
  pbx import     FILE --data-dir DIR [--json]
  pbx reg list   --data-dir DIR [--json]
  pbx cdr list   --data-dir DIR [--limit N] [--json]
  pbx admin token create --data-dir DIR --email E [--json]
  pbx admin invite --data-dir DIR --email E [--url URL]
  pbx --version
Every command that takes --data-dir also takes --db URL (``postgresql://user@host/db``): the configuration,
registrations and CDRs then live in that database (the same schema and migrations as the default SQLite
file), while media files (sound clips, voicemail, faxes) stay in the data directory.

Exit status: 0 on success, 2 on invalid input (the message names the field, e.g.
``extension: 201 is already in use``), 1 when the data directory or database cannot be used.
Output goes through ``_out``/``_err`` (stdout/stderr), never ``print``.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import sys
import zoneinfo
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from engine import __version__
from engine.call.hotdesk import DEFAULT_HOT_DESK_HOURS
from engine.clock import SystemClock
from engine.model import DEFAULT_DIAL_PERMISSIONS, DIAL_PERMISSIONS, CallRecord, ModelError, rules
from engine.net.overload import OverloadConfig
from engine.net.transport import MAX_TCP_CONNECTIONS, MAX_TCP_PER_SOURCE
from engine.sip.endpoint import LoadLimits
from engine.sip.guard import DEFAULT_BAN_S, DEFAULT_RATE, GuardConfig
from engine.store import BindingRecord, Store, StoreError, cdr_to_json, load_company_file

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_INVALID: Final = 2
DEFAULT_DATA_DIR: Final = "./data"
DEFAULT_SIP: Final = "0.0.0.0:5060"
DEFAULT_HTTP: Final = "127.0.0.1:8080"
DEFAULT_CDR_LIMIT: Final = 50
DEFAULT_LIMITS: Final = LoadLimits()
DEFAULT_OVERLOAD: Final = OverloadConfig()


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _json(value: Any) -> None:
    _out(json.dumps(value, indent=2, ensure_ascii=False))


def parse_hostport(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise argparse.ArgumentTypeError(f"write IPv6 addresses as [ADDRESS]:PORT, got {text!r}")
    return host, int(port_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pbx",
        description="pbx-engine: an open-source cloud PBX. Run the engine and administer a data directory.",
        epilog="Exit status: 0 ok, 2 invalid input (the message names the field), 1 other failures.",
    )
    parser.add_argument("--version", action="version", version=f"pbx-engine {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def data_dir_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--data-dir",
            type=Path,
            default=Path(DEFAULT_DATA_DIR),
            metavar="DIR",
            help=f"the data directory holding pbx.sqlite3 (default {DEFAULT_DATA_DIR}; created when missing)",
        )
        p.add_argument(
            "--db",
            metavar="URL",
            default=None,
            help="a database instead of DATA_DIR/pbx.sqlite3, e.g. postgresql://pbx@db.example/pbx "
            "(media files stay in the data directory)",
        )

    def json_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print the result as JSON")

    serve = commands.add_parser(
        "serve",
        help="run the engine in the foreground",
        description="Run the engine in the foreground until SIGTERM/SIGINT. On an empty data directory the "
        "example company (config/example-company.yaml) is imported first.",
    )
    data_dir_arg(serve)
    serve.add_argument(
        "--sip",
        type=parse_hostport,
        default=parse_hostport(DEFAULT_SIP),
        metavar="HOST:PORT",
        help=f"address for SIP over UDP and TCP (default {DEFAULT_SIP})",
    )
    serve.add_argument(
        "--tls",
        type=parse_hostport,
        default=None,
        metavar="HOST:PORT",
        help="also listen for SIP over TLS (transport=tls, TLS 1.2 or later) on this address, e.g. "
        "0.0.0.0:5061 (default: off)",
    )
    serve.add_argument(
        "--ws",
        type=parse_hostport,
        default=None,
        metavar="HOST:PORT",
        help="also listen for SIP over WebSocket (RFC 7118, subprotocol sip; browsers) on this address, e.g. "
        "0.0.0.0:8080 (default: off)",
    )
    serve.add_argument(
        "--wss",
        type=parse_hostport,
        default=None,
        metavar="HOST:PORT",
        help="also listen for SIP over secure WebSocket (WSS, TLS 1.2 or later, the certificate of --tls) on "
        "this address, e.g. 0.0.0.0:8443 (default: off)",
    )
    serve.add_argument(
        "--tls-cert",
        type=Path,
        default=None,
        metavar="FILE.pem",
        help="the TLS listener's certificate chain (PEM; with --tls-key). Default: a self-signed certificate "
        "made on first start in DATA_DIR/tls/ and reused; its SHA-256 fingerprint is logged at start",
    )
    serve.add_argument(
        "--tls-key",
        type=Path,
        default=None,
        metavar="FILE.pem",
        help="the private key of --tls-cert (PEM, unencrypted)",
    )
    serve.add_argument(
        "--http",
        "--api",
        dest="api",
        type=parse_http_address,
        default=parse_hostport(DEFAULT_HTTP),
        metavar="HOST:PORT",
        help=f"address of the admin REST API (/api; OpenAPI: /api/openapi.json) and phone provisioning "
        f"(/prov/) (default {DEFAULT_HTTP}; 'off' for none)",
    )
    serve.add_argument(
        "--log-level",
        choices=("debug", "info", "warning"),
        default="info",
        help="log verbosity; debug logs one line per SIP request (default info)",
    )
    serve.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text lines (default), or one JSON object a line with the SIP Call-ID on call-related lines",
    )
    serve.add_argument(
        "--digest",
        type=parse_digest_algorithms,
        default=("MD5",),
        metavar="ALG[,ALG]",
        help="digest algorithms to challenge with, most preferred first: MD5, SHA-256 (RFC 8760), "
        "MD5-sess, SHA-256-sess (default MD5: SIPp and some phones give up on a SHA-256 challenge)",
    )
    serve.add_argument(
        "--rtp-ports",
        type=parse_port_range,
        default=(20000, 29999),
        metavar="FIRST-LAST",
        help="UDP port range of the RTP relay; each anchored call uses two even/odd pairs (default "
        "20000-29999)",
    )
    serve.add_argument(
        "--hot-desk-hours",
        type=parse_hours,
        default=DEFAULT_HOT_DESK_HOURS,
        metavar="HOURS",
        help=f"how long a hot-desk login (*11) lasts unless logged out (default {DEFAULT_HOT_DESK_HOURS:g})",
    )
    serve.add_argument(
        "--ring-timeout",
        type=parse_seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long a line rings before the caller gets 480 No Answer (default 30)",
    )
    serve.add_argument(
        "--park-timeout",
        type=parse_seconds,
        default=60.0,
        metavar="SECONDS",
        help="how long a parked call waits on its orbit before the parker's line rings (default 60)",
    )
    serve.add_argument(
        "--rate-limit",
        type=parse_rate,
        default=DEFAULT_RATE,
        metavar="REQUESTS",
        help="SIP requests per second one source address may send (the double in a burst); beyond it they "
        "are dropped, and a source that keeps on is banned for --ban-seconds. Trunk addresses are never "
        f"limited. 0 turns the limit off (load tests). Default {DEFAULT_RATE:g}. Requests with a "
        "scanner's User-Agent (friendly-scanner, sipvicious, sipcli...) get no answer and ban their "
        "source either way",
    )
    serve.add_argument(
        "--ban-seconds",
        type=parse_seconds,
        default=DEFAULT_BAN_S,
        metavar="SECONDS",
        help=f"how long a flooding or scanning source is banned (default {DEFAULT_BAN_S:g})",
    )
    serve.add_argument(
        "--max-transactions",
        type=parse_count,
        default=DEFAULT_LIMITS.max_transactions,
        metavar="N",
        help="SIP server transactions alive at once (a completed one lives 32 s to absorb retransmissions); "
        f"when full, new requests get 503 with Retry-After (default {DEFAULT_LIMITS.max_transactions:,})",
    )
    serve.add_argument(
        "--max-calls",
        type=parse_count,
        default=DEFAULT_LIMITS.max_calls,
        metavar="N",
        help="calls in progress; beyond it a new INVITE gets 503 with Retry-After (default 0: no cap; the "
        "RTP port range caps anchored calls anyway)",
    )
    serve.add_argument(
        "--max-connections",
        type=parse_count,
        default=MAX_TCP_CONNECTIONS,
        metavar="N",
        help=f"open TCP (and, apart, TLS) connections; beyond it new ones are closed (default "
        f"{MAX_TCP_CONNECTIONS:,})",
    )
    serve.add_argument(
        "--max-connections-per-source",
        type=parse_count,
        default=MAX_TCP_PER_SOURCE,
        metavar="N",
        help=f"open TCP/TLS connections from one address (default {MAX_TCP_PER_SOURCE})",
    )
    serve.add_argument(
        "--overload-cpu",
        type=parse_fraction,
        default=DEFAULT_OVERLOAD.enter,
        metavar="CORES",
        help="CPU use (of one core) at which new INVITEs and REGISTERs get 503 with Retry-After while "
        "calls in progress go on; shedding stops below 85 %% of it (default "
        f"{DEFAULT_OVERLOAD.enter:g}; 0 never sheds)",
    )
    serve.add_argument(
        "--retry-after",
        type=parse_count,
        default=DEFAULT_LIMITS.retry_after_s,
        metavar="SECONDS",
        help=f"the Retry-After of a 503 sent for load (default {DEFAULT_LIMITS.retry_after_s})",
    )
    serve.add_argument(
        "--no-hold-music",
        dest="hold_music",
        action="store_false",
        help="pass a phone's hold (re-INVITE sendonly/inactive) on to the other phone, which then hears "
        "what the holder sends (usually nothing), instead of answering it and playing the hold music "
        "to the other phone (the default)",
    )
    serve.add_argument(
        "--advertise",
        type=parse_ip_literal,
        default=None,
        metavar="ADDRESS",
        help="the IP address phones and carriers reach this engine on, written in Via, Contact and SDP "
        "(default: the --sip address, or for 0.0.0.0 the address of the interface with the default route; "
        "set it behind a 1:1 NAT)",
    )
    serve.add_argument(
        "--smtp",
        type=parse_hostport,
        default=None,
        metavar="HOST:PORT",
        help="the mail server for voicemail to e-mail (lines with voicemail_to_email); default: none",
    )
    serve.add_argument(
        "--smtp-from",
        default="voicemail@localhost",
        metavar="ADDRESS",
        help="the sender of voicemail e-mails (default voicemail@localhost)",
    )
    serve.set_defaults(handler=_cmd_serve)

    user = commands.add_parser("user", help="manage users", description="Manage users and their lines.")
    user_commands = user.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = user_commands.add_parser(
        "add",
        help="create a user with a line",
        description="Create a user and a line. The line's SIP username is its extension. A data directory "
        "that does not exist yet gets an empty company (not the example company).",
    )
    data_dir_arg(add)
    add.add_argument("--first", required=True, metavar="F", help="first name")
    add.add_argument("--last", required=True, metavar="L", help="last name")
    add.add_argument("--email", metavar="E", help="e-mail address (unique)")
    add.add_argument(
        "--extension", metavar="N", help="extension, 3-6 digits (default: the next free one from 201)"
    )
    add.add_argument("--sip-password", metavar="PW", help="SIP password (default: a generated one)")
    add.add_argument(
        "--dial-permissions",
        metavar="P,P...",
        help=f"what the line may dial, comma-separated, from: {', '.join(DIAL_PERMISSIONS)} (default: "
        f"{','.join(rules.format_dial_permissions(DEFAULT_DIAL_PERMISSIONS))}; international must be "
        "granted; an empty value allows emergency numbers only, which are always allowed)",
    )
    json_arg(add)
    add.set_defaults(handler=_cmd_user_add)

    imp = commands.add_parser(
        "import",
        help="load a company file",
        description="Replace the configuration with a company file like config/example-company.yaml, "
        "all or nothing.",
    )
    imp.add_argument("file", type=Path, metavar="FILE", help="the company file (YAML)")
    data_dir_arg(imp)
    json_arg(imp)
    imp.set_defaults(handler=_cmd_import)

    reg = commands.add_parser("reg", help="registrations", description="Inspect SIP registrations.")
    reg_commands = reg.add_subparsers(dest="action", metavar="ACTION", required=True)
    reg_list = reg_commands.add_parser(
        "list",
        help="list stored registrations",
        description="List the registrations persisted in the store (as of the writer's last commit).",
    )
    data_dir_arg(reg_list)
    json_arg(reg_list)
    reg_list.set_defaults(handler=_cmd_reg_list)

    cdr = commands.add_parser("cdr", help="call detail records", description="Inspect call detail records.")
    cdr_commands = cdr.add_subparsers(dest="action", metavar="ACTION", required=True)
    cdr_list = cdr_commands.add_parser(
        "list",
        help="list the latest calls",
        description="List the latest call detail records, newest first: time (in the company's time zone), "
        "direction, caller, callee, DID, disposition, talk time and hangup cause. --json prints every field "
        "of each record, including its legs (the branches that were rung); times are epoch seconds.",
    )
    data_dir_arg(cdr_list)
    cdr_list.add_argument(
        "--limit",
        type=_positive_int,
        default=DEFAULT_CDR_LIMIT,
        metavar="N",
        help=f"how many calls to show (default {DEFAULT_CDR_LIMIT})",
    )
    json_arg(cdr_list)
    cdr_list.set_defaults(handler=_cmd_cdr_list)

    admin = commands.add_parser("admin", help="administrators", description="Bootstrap API access.")
    admin_commands = admin.add_subparsers(dest="action", metavar="ACTION", required=True)
    token = admin_commands.add_parser("token", help="API tokens", description="Manage admin API tokens.")
    token_commands = token.add_subparsers(dest="token_action", metavar="ACTION", required=True)
    token_create = token_commands.add_parser(
        "create",
        help="make the user with this e-mail a super admin and print a new API token (once)",
        description="Bootstrap the admin API: the user with --email (created without a line when missing) "
        "becomes super admin and gets a new API token, printed once on stdout. Anyone who can run this "
        "can write the data directory anyway.",
    )
    data_dir_arg(token_create)
    token_create.add_argument("--email", required=True, metavar="E", help="the admin's e-mail address")
    json_arg(token_create)
    token_create.set_defaults(handler=_cmd_admin_token_create)
    invite = admin_commands.add_parser(
        "invite",
        help="make the user with this e-mail a super admin with web login and print the registration link",
        description="Bootstrap the web admin: the user with --email (created without a line when missing) "
        "becomes super admin and may log in to the web admin at / of --http; the link printed (once) "
        "opens the page where they set their password. A new invitation replaces the old one.",
    )
    data_dir_arg(invite)
    invite.add_argument("--email", required=True, metavar="E", help="the admin's e-mail address")
    invite.add_argument(
        "--url",
        default="http://127.0.0.1:8080",
        metavar="URL",
        help="where the web admin is reached (default: http://127.0.0.1:8080, --http's default)",
    )
    invite.set_defaults(handler=_cmd_admin_invite)

    voicemail = commands.add_parser("voicemail", help="voicemail", description="Administer voicemail.")
    vm_commands = voicemail.add_subparsers(dest="action", metavar="ACTION", required=True)
    greeting = vm_commands.add_parser("greeting", help="greetings", description="Manage voicemail greetings.")
    greeting_commands = greeting.add_subparsers(dest="greeting_action", metavar="ACTION", required=True)
    greeting_set = greeting_commands.add_parser(
        "set",
        help="assign a pre-recorded greeting file to a line",
        description="Convert a WAV file (any rate, channels, PCM/float/u-law/A-law) to 8 kHz 16-bit mono and "
        "assign it as the mailbox's unavailable, busy or temporary greeting (a temporary greeting is heard "
        "only while it is switched on, from the phone menu: *98/*99, 0, 4, 2).",
    )
    data_dir_arg(greeting_set)
    greeting_set.add_argument(
        "--extension", required=True, metavar="N", help="the line's extension (its mailbox number)"
    )
    greeting_set.add_argument(
        "--type", required=True, choices=("unavailable", "busy", "temporary"), help="which greeting to set"
    )
    greeting_set.add_argument("file", type=Path, metavar="FILE.wav", help="the greeting recording (WAV)")
    greeting_set.set_defaults(handler=_cmd_voicemail_greeting_set)
    return parser


def _positive_int(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    """Run one ``pbx`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    label = " ".join(str(part) for part in (args.command, getattr(args, "action", None)) if part)
    try:
        return handler(args)
    except BrokenPipeError:
        # The reader went away (``pbx reg list | head``): not an error worth a traceback.
        sys.stderr.close()
        return EXIT_FAILURE
    except ModelError as exc:
        if getattr(args, "json", False):
            _json({"error": {"field": exc.field, "message": exc.message}})
        _err(f"pbx {label}: {exc}")
        return EXIT_INVALID
    except (StoreError, OSError) as exc:
        if getattr(args, "json", False):
            _json({"error": {"field": None, "message": str(exc)}})
        _err(f"pbx {label}: {exc}")
        return EXIT_FAILURE


def parse_digest_algorithms(text: str) -> tuple[str, ...]:
    """``SHA-256,MD5`` -> ("SHA-256", "MD5"); each must be an algorithm engine.sip.auth knows."""
    known = {"MD5": "MD5", "SHA-256": "SHA-256", "MD5-SESS": "MD5-sess", "SHA-256-SESS": "SHA-256-sess"}
    names = [part.strip().upper() for part in text.split(",") if part.strip()]
    if not names or any(n not in known for n in names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"{text!r}: give distinct algorithms from {', '.join(known.values())}, separated by commas"
        )
    return tuple(known[n] for n in names)


def parse_port_range(text: str) -> tuple[int, int]:
    """``FIRST-LAST``: an even first port, at least four ports (one call), all within 1024-65535."""
    first_text, sep, last_text = text.partition("-")
    if not sep or not first_text.isdigit() or not last_text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected FIRST-LAST, e.g. 20000-29999")
    first, last = int(first_text), int(last_text)
    if not 1024 <= first < last <= 65535 or last - first < 3:
        raise argparse.ArgumentTypeError(f"{text!r}: ports must lie in 1024-65535 with at least 4 of them")
    return first, last


def parse_ip_literal(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an IP address") from None


def parse_hours(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of hours") from None
    if not 0.001 <= value <= 168.0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be between 0.001 and 168 hours")
    return value


def parse_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of seconds") from None
    if not 1.0 <= value <= 3600.0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be between 1 and 3600 seconds")
    return value


def parse_rate(text: str) -> float:
    """``--rate-limit``: requests per second, 0 (off) or 1-100000."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected requests per second") from None
    if value != 0 and not 1.0 <= value <= 100_000.0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 0 (off) or between 1 and 100000")
    return value


def parse_count(text: str) -> int:
    """A cap or a number of seconds: a whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be 0 or more")
    return value


def parse_fraction(text: str) -> float:
    """``--overload-cpu``: a share of one core, 0 (off) up to 1 (a whole core)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number between 0 and 1") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be between 0 and 1")
    return value


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        from engine.server import serve
        from engine.voicemail.email import SmtpConfig
    except ModuleNotFoundError as exc:
        if exc.name != "engine.server":
            raise
        _err("pbx serve: this build has no server (engine.server is missing)")
        return EXIT_FAILURE
    from engine.net.certificate import CertificateError, CertificateFiles

    if (args.tls_cert is None) != (args.tls_key is None):
        _err("pbx serve: --tls-cert and --tls-key go together")
        return EXIT_INVALID
    if args.tls_cert is not None and args.tls is None and args.wss is None:
        _err("pbx serve: --tls-cert needs --tls HOST:PORT or --wss HOST:PORT")
        return EXIT_INVALID
    sip_host, sip_port = args.sip
    try:
        return serve(
            data_dir=Path(args.data_dir),
            db_url=args.db,
            log_format=args.log_format,
            sip_host=sip_host,
            sip_port=sip_port,
            api=args.api,
            log_level=args.log_level,
            digest_algorithms=args.digest,
            rtp_ports=args.rtp_ports,
            ring_timeout=args.ring_timeout,
            park_timeout=args.park_timeout,
            hot_desk_hours=args.hot_desk_hours,
            advertise=args.advertise,
            hold_music=args.hold_music,
            smtp=None if args.smtp is None else SmtpConfig(args.smtp[0], args.smtp[1], args.smtp_from),
            tls=args.tls,
            ws=args.ws,
            wss=args.wss,
            tls_files=None if args.tls_cert is None else CertificateFiles(args.tls_cert, args.tls_key),
            guard=GuardConfig(rate=args.rate_limit, burst=max(1.0, 2 * args.rate_limit),
                              ban_s=args.ban_seconds),
            limits=LoadLimits(max_transactions=max(1, args.max_transactions), max_calls=args.max_calls,
                              retry_after_s=args.retry_after),
            overload=OverloadConfig(enter=args.overload_cpu, leave=0.85 * args.overload_cpu),
            connections=(max(1, args.max_connections), max(1, args.max_connections_per_source)),
        )
    except CertificateError as exc:
        _err(f"pbx serve: {exc}")
        return EXIT_FAILURE


def _cmd_user_add(args: argparse.Namespace) -> int:
    permissions = None
    if args.dial_permissions is not None:
        permissions = [p.strip() for p in args.dial_permissions.split(",") if p.strip()]
    store = Store.open(args.data_dir, args.db)
    try:
        user, line, password = store.add_user(
            args.first, args.last, args.email, args.extension, args.sip_password, dial_permissions=permissions
        )
        realm = store.company().sip_realm
    finally:
        store.close()
    if args.json:
        _json(
            {
                "user": {
                    "id": user.id,
                    "first_name": user.first_name,
                    "last_name": user.last_name,
                    "email": user.email,
                },
                "line": {
                    "id": line.id,
                    "extension": line.extension,
                    "name": line.name,
                    "dial_permissions": rules.format_dial_permissions(line.dial_permissions),
                },
                "extension": line.extension,
                "sip_username": line.extension,
                "sip_password": password,
                "sip_realm": realm,
            }
        )
    else:
        _out(f"Created user {user.display_name} (id {user.id}){f' <{user.email}>' if user.email else ''}")
        _out(f"  extension:    {line.extension}")
        _out(f"  SIP username: {line.extension}")
        _out(f"  SIP password: {password}")
        _out(f"  SIP realm:    {realm}")
        allowed = ", ".join(rules.format_dial_permissions(line.dial_permissions)) or "emergency numbers only"
        _out(f"  may dial:     {allowed}")
    return EXIT_OK


def _cmd_import(args: argparse.Namespace) -> int:
    from engine.company import check_document_plans, install_sound_clips

    clock = SystemClock()
    started = clock.now()
    doc = load_company_file(args.file)
    checked = check_document_plans(doc)
    if checked.errors:
        for issue in checked.errors:
            _err(f"pbx import: {issue}")
        return EXIT_INVALID
    for issue in checked.warnings:
        _err(f"pbx import: warning: {issue}")
    install_sound_clips(doc, Path(args.file).parent, Path(args.data_dir))
    store = Store.open(args.data_dir, args.db)
    try:
        summary = store.import_company(doc)
    finally:
        store.close()
    elapsed = clock.now() - started
    if args.json:
        _json(
            {
                "company": summary.company,
                "users": summary.users,
                "lines": summary.lines,
                "numbers": summary.numbers,
                "dial_plans": summary.dial_plans,
                "trunks": summary.trunks,
                "config_version": summary.config_version,
                "seconds": round(elapsed, 3),
            }
        )
    else:
        _out(
            f"Imported {summary.company}: {_count(summary.users, 'user')}, {_count(summary.lines, 'line')}, "
            f"{_count(summary.numbers, 'number')}, {_count(summary.dial_plans, 'dial plan')}, "
            f"{_count(summary.trunks, 'trunk')} in {elapsed:.2f} s (config version {summary.config_version})"
        )
    return EXIT_OK


def _cmd_reg_list(args: argparse.Namespace) -> int:
    store = Store.open(args.data_dir, args.db)
    try:
        records = store.list_bindings()
    finally:
        store.close()
    now = SystemClock().wall()
    if args.json:
        _json([_binding_json(r, now) for r in records])
        return EXIT_OK
    if not records:
        _out("No registrations.")
        return EXIT_OK
    rows = [
        (
            r.aor,
            r.contact,
            f"{r.expires_at - now:.0f}s" if r.expires_at > now else "expired",
            f"{r.source_transport}:{r.source_host}:{r.source_port}",
            r.user_agent,
        )
        for r in records
    ]
    _table(("AOR", "CONTACT", "EXPIRES", "SOURCE", "USER-AGENT"), rows)
    _out(_count(len(records), "registration"))
    return EXIT_OK


def parse_http_address(text: str) -> tuple[str, int] | None:
    """``HOST:PORT`` of the admin API, or None for ``off``."""
    if text.strip().lower() in ("off", "none"):
        return None
    return parse_hostport(text)


def _bootstrap(args: argparse.Namespace, web: bool) -> tuple[Any, str]:
    """The super admin with ``--email`` and a secret for them: an API token, or (``web``) an invitation."""
    from engine.store.admin import AdminStore

    store = Store.open(args.data_dir, args.db)
    try:
        admin = AdminStore(store)
        return admin.bootstrap_web_admin(args.email) if web else admin.bootstrap_admin(args.email)
    finally:
        store.close()


def _cmd_admin_token_create(args: argparse.Namespace) -> int:
    user, token = _bootstrap(args, web=False)
    if args.json:
        _json({"user_id": user.id, "email": user.email, "token": token})
    else:
        _err(f"pbx admin token create: {user.email} (user {user.id}) is super admin; the token is shown once")
        _out(token)
    return EXIT_OK


def _cmd_admin_invite(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    user, token = _bootstrap(args, web=True)
    _err(f"pbx admin invite: {user.email} (user {user.id}) is super admin; open the link to set the password")
    _out(f"{args.url.rstrip('/')}/register?token={quote(token)}")
    return EXIT_OK


def _cmd_cdr_list(args: argparse.Namespace) -> int:
    store = Store.open(args.data_dir, args.db)
    try:
        records = store.list_cdrs(args.limit)
        timezone = store.company().timezone
    finally:
        store.close()
    if args.json:
        _json([cdr_to_json(r) for r in records])
        return EXIT_OK
    if not records:
        _out("No calls recorded.")
        return EXIT_OK
    try:
        zone: datetime.tzinfo = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = datetime.UTC  # the company's zone is unknown on this machine: say which one we used
        timezone = "UTC"
    rows = [
        (
            datetime.datetime.fromtimestamp(r.started_at, zone).strftime("%Y-%m-%d %H:%M:%S"),
            r.direction.value,
            _party(r),
            r.callee,
            r.did or "-",
            r.disposition.value,
            _duration(r),
            r.hangup_cause,
        )
        for r in records
    ]
    header = (f"TIME ({timezone})", "DIRECTION", "CALLER", "CALLEE", "DID", "DISPOSITION", "DURATION",
              "CAUSE")
    _table(header, rows)
    _out(f"{_count(len(records), 'call')}, newest first")
    return EXIT_OK


def _cmd_voicemail_greeting_set(args: argparse.Namespace) -> int:
    """Convert FILE and install it as a greeting of a line's mailbox (created with PIN 0000 when missing).
    Runs beside a live engine: the store is opened without crash recovery, which is the engine's job."""
    from engine.media.wav import WavError, convert_to_8k_mono16, decode_8k_mono16
    from engine.voicemail.model import GreetingKind, validate_mailbox_number
    from engine.voicemail.store import VoicemailStore

    number = validate_mailbox_number(args.extension, "extension")
    data = Path(args.file).read_bytes()
    try:
        wav = convert_to_8k_mono16(data)
    except WavError as exc:
        raise ModelError("file", f"{args.file}: not a WAV file we can read ({exc})") from None
    store = Store.open(args.data_dir, args.db)
    try:
        extensions = {line.extension for line in store.lines()}
    finally:
        store.close()
    voicemail = VoicemailStore.open(args.data_dir, recover=False)
    if number not in extensions and voicemail.mailbox(number) is None:
        raise ModelError("extension", f"no line or mailbox {number}")
    voicemail.ensure_mailbox(number)
    box = voicemail.set_greeting_audio(number, GreetingKind(args.type), wav)
    seconds = len(decode_8k_mono16(wav)) / 8000
    _out(f"Set the {args.type} greeting of mailbox {number} ({seconds:.1f} s, 8 kHz mono)")
    _out(f"  file: {box.greetings[GreetingKind(args.type)]}")
    if args.type == "temporary" and not box.temporary_active:
        _out("  the temporary greeting is off: switch it on from the phone (*99, 0, 4, 2)")
    return EXIT_OK


def _party(r: CallRecord) -> str:
    return f"{r.caller_name} <{r.caller}>" if r.caller_name and r.caller_name != r.caller else r.caller


def _duration(r: CallRecord) -> str:
    """Talk time as M:SS or H:MM:SS; "-" for a call that was not answered."""
    if r.answered_at is None:
        return "-"
    minutes, seconds = divmod(round(r.duration), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _binding_json(r: BindingRecord, now: float) -> dict[str, Any]:
    return {
        "aor": r.aor,
        "contact": r.contact,
        "expires_at": r.expires_at,
        "expires_in": max(0, round(r.expires_at - now)),
        "q": r.q,
        "call_id": r.call_id,
        "cseq": r.cseq,
        "source_transport": r.source_transport,
        "source_host": r.source_host,
        "source_port": r.source_port,
        "user_agent": r.user_agent,
        "instance_id": r.instance_id,
        "reg_id": r.reg_id,
    }


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        _out("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    sys.exit(main())
