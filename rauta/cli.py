"""The ``rauta`` command line.

Role: the user-facing entry point. Every subcommand runs the same library code the tests
run (``translate`` is exactly what ``tests/golden`` checks).

Rules:
- Bad input is one line on stderr naming the file, object and field, and exit code 2;
  never a traceback. A bad option value (``--admin foo``, ``--hash-on x``) is a usage
  error; a start-up failure (a taken port, an uncreatable directory) is one line, exit 1.
- Warnings (unknown fields, skipped kinds) go to stderr as ``rauta: warning: ...``;
  ``--strict`` turns unknown fields into errors.
- Every option has help text (``tests/unit/test_cli_options.py`` walks the tree).
- Output goes to stdout as YAML (or JSON with ``--json``), in the model's own order.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click
import yaml

from rauta import _compiled, runloop
from rauta.loader import LoadError, list_files, load_snapshot
from rauta.model.addresses import parse_pool
from rauta.model.graph import DEFAULT_CONTROLLER
from rauta.model.render import document
from rauta.model.services import (
    DEFAULT_PORT_RANGE,
    ServiceMode,
    fallback_address,
    parse_port_range,
)
from rauta.model.translate import translate

if TYPE_CHECKING:
    from rauta.settings import ProxySettings


def dump_yaml(data: object) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def translate_files(paths: list[str], controller_name: str = DEFAULT_CONTROLLER,
                    address_pool: str | None = None, *, strict: bool = False,
                    warn: Callable[[str], None] | None = None,
                    gateway_services: ServiceMode | None = None) -> dict[str, object]:
    """Load ``paths`` and translate them: the document ``rauta translate`` prints."""
    return document(translate(load_snapshot(paths, strict=strict, warn=warn),
                              controller_name=controller_name, address_pool=address_pool,
                              gateway_services=gateway_services))


_PLACEHOLDER = re.compile(r"\$\{(port|addr):")


def placeholder_hint(paths: list[str]) -> str | None:
    """How to render a file with quickstart placeholders (``${port:X}``), if one has them."""
    try:
        files = list_files(paths)
    except LoadError:
        return None
    for f in files:
        try:
            if _PLACEHOLDER.search(f.read_text(encoding="utf-8", errors="replace")):
                return (f"{f} has ${{port:...}}/${{addr:...}} placeholders that `rauta "
                        f"quickstart` fills in; render it first: rauta quickstart --dir DIR "
                        f"--render-only, then rauta translate DIR/quickstart.yaml")
        except OSError:
            continue
    return None


def check_admin(_ctx: object, _param: object, value: str) -> str:
    """``--admin HOST:PORT``: a usage error (one line) unless it has a port 1..65535."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:9901)")
    return value


def check_hash_on(_ctx: object, _param: object, value: str) -> str:
    """``--hash-on``: flow, client-ip or header:NAME with a header name."""
    if value in ("flow", "client-ip"):
        return value
    name = value[len("header:"):].strip() if value.startswith("header:") else ""
    if not name or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
        raise click.BadParameter(f"{value!r}: expected flow, client-ip or header:NAME")
    return value


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr and exit (a start-up failure, never a traceback)."""
    click.echo(f"rauta: {message}", err=True)
    sys.exit(code)


# ``--access-log``, the same on ``serve`` and ``controller``.
access_log_option = click.option(
    "--access-log", default=None, metavar="FILE",
    help="Write a JSON line per request to FILE ('-' for stdout), off the request path.")


def _seconds(name: str, default: float, text: str, minimum: float = 0.001) -> Any:
    return click.option(name, default=default, show_default=True, metavar="S",
                        type=click.FloatRange(minimum), help=text)


# The data plane's settings in their groups (``rauta.settings``): hardening, limits,
# timeouts and drain. One decorator, ``proxy_options``, puts them all on ``serve`` and
# ``controller`` with the Proxy's own defaults (tests/unit/test_cli.py checks both).
HARDENING_OPTIONS: list[Any] = [
    click.option("--trusted-hops", default=0, show_default=True, type=click.IntRange(0, 32),
                 help="Proxies in front of rauta trusted to set X-Forwarded-For/Forwarded; "
                      "0 treats rauta as the edge and replaces them."),
    click.option("--underscores-in-headers", is_flag=True, default=False,
                 help="Forward request header names containing '_' (dropped by default)."),
    click.option("--allow-trace", is_flag=True, default=False, help="Forward TRACE (405 by default)."),
]
LIMIT_OPTIONS: list[Any] = [
    click.option("--max-connections", default=10000, show_default=True,
                 type=click.IntRange(1), help="Limit: client connections at most, all ports."),
    click.option("--max-head-bytes", default=64 * 1024, show_default=True,
                 type=click.IntRange(1024), metavar="BYTES",
                 help="Limit: a request or response head larger than this is refused "
                      "(431 to a client, 502 for a backend's answer)."),
    click.option("--max-headers", default=100, show_default=True, type=click.IntRange(1),
                 help="Limit: header fields in one request or response head."),
    click.option("--max-idle-per-endpoint", default=64, show_default=True,
                 type=click.IntRange(0),
                 help="Limit: idle keep-alive connections kept per backend endpoint."),
]
TIMEOUT_OPTIONS: list[Any] = [
    _seconds("--connect-timeout", 5.0, "Timeout: connecting to a backend endpoint."),
    _seconds("--upstream-idle-timeout", 60.0,
             "Timeout: an idle keep-alive connection to a backend is closed after this."),
    _seconds("--client-idle-timeout", 75.0,
             "Timeout: a client keep-alive connection with nothing in flight."),
    _seconds("--head-timeout", 30.0, "Timeout: a client's request head still incomplete."),
    _seconds("--response-head-timeout", 60.0,
             "Timeout: no response head this long after the request ended: 504 (routes "
             "without timeouts of their own; 0: none).", minimum=0.0),
    _seconds("--body-timeout", 60.0,
             "Timeout: no byte of a request body for this long (408, or the connection "
             "is dropped once answering began)."),
    _seconds("--send-timeout", 60.0,
             "Timeout: the client takes no response bytes for this long."),
    _seconds("--lingering-timeout", 5.0,
             "Timeout: after answering a request whose body was not read, the rest is "
             "discarded until the client is quiet this long..."),
    _seconds("--lingering-time", 30.0, "...or at most this long; then the connection closes."),
]
DRAIN_OPTIONS: list[Any] = [
    click.option("--grace", default=10.0, show_default=True, type=click.FloatRange(0),
                 metavar="S",
                 help="Drain: on SIGTERM, and for a removed port, requests in flight get "
                      "this long to finish."),
]
WORKER_OPTIONS: list[Any] = [
    click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
                 help="Data-plane processes. Above 1, this process is the control plane "
                      "(sources, status, admin) and N workers bind the listeners with "
                      "SO_REUSEPORT, each applying every config; not with --observe or "
                      "--access-log - (a file is shared by the workers)."),
]
PROXY_SETTINGS = ("trusted_hops", "underscores_in_headers", "allow_trace", "max_connections",
                  "max_head_bytes", "max_headers", "max_idle_per_endpoint",
                  "connect_timeout", "upstream_idle_timeout", "client_idle_timeout",
                  "head_timeout", "response_head_timeout", "body_timeout", "send_timeout",
                  "lingering_timeout", "lingering_time")


def proxy_options(f):  # type: ignore[no-untyped-def]
    """The data plane's settings (hardening, limits, timeouts, drain, workers), shared by
    ``serve`` and ``controller``."""
    for opt in reversed([*HARDENING_OPTIONS, *LIMIT_OPTIONS, *TIMEOUT_OPTIONS,
                         *DRAIN_OPTIONS, *WORKER_OPTIONS]):
        f = opt(f)
    return f


def _store_observe(ctx: click.Context, param: click.Parameter, value: object) -> object:
    """Keep ``--observe-iface``/``--observe-netns`` for ``observe_settings`` (ctx.meta)."""
    ctx.meta[f"rauta.{param.name}"] = value
    return value


def observe_options(f):  # type: ignore[no-untyped-def]
    """The observer's options, shared by ``serve`` and ``controller``."""
    opts = [
        click.option("--observe", type=click.Choice(["proxy", "xdp", "both"]), default=None,
                     help="Observe traffic: per-route baselines and anomaly events "
                          "(slow_response, error_spike, connect_failure, resolved). proxy: "
                          "from the proxy's own upstream exchanges; xdp: from the kernel "
                          "(eBPF XDP on --observe-iface and connect tracepoints; root); "
                          "both: kernel events joined with the proxy's routing decisions."),
        click.option("--observe-out", default="-", show_default=True, metavar="PATH",
                     help="Where the observer writes its JSON lines ('-' is stdout)."),
        click.option("--observe-window", default=10.0, show_default=True,
                     type=click.FloatRange(0.1, 3600),
                     help="The observer's window in seconds."),
        click.option("--observe-iface", multiple=True, metavar="IF", expose_value=False,
                     callback=_store_observe,
                     help="xdp/both: interface toward the backends to attach XDP to "
                          "(repeatable); the other end of a veth is attached too."),
        click.option("--observe-netns", default=None, metavar="NS", expose_value=False,
                     callback=_store_observe,
                     help="xdp/both: network namespace of the --observe-iface interfaces "
                          "(a name or a /proc/PID/ns/net path)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def observe_settings(observe: str | None, observe_out: str,
                     observe_window: float) -> dict[str, object]:
    """The observer's keyword arguments; an unwritable ``--observe-out`` is a usage error.

    For xdp/both the kernel options go to ``rauta.observe.serving.configure``; a mode
    that cannot run here (no interface, BPF unavailable) is one line and exit 2 or 3."""
    if observe and observe_out != "-":
        try:
            open(observe_out, "a").close()
        except OSError as exc:
            raise click.BadParameter(f"cannot write {observe_out}: {exc.strerror}",
                                     param_hint="--observe-out") from None
    if observe:
        from rauta.observe import serving

        meta = click.get_current_context().meta
        kernel = serving.KernelOptions(ifaces=tuple(meta.get("rauta.observe_iface") or ()),
                                       netns=meta.get("rauta.observe_netns"))
        reason = serving.check(observe, kernel)
        if reason:
            fail(reason, 3 if "BPF unavailable" in reason else 2)
        serving.configure(observe, kernel)
    return {"observe": observe, "observe_out": observe_out, "observe_window": observe_window}


def check_pool(pool: str | None) -> None:
    """A bad ``--address-pool`` is a usage error: one line on stderr naming the option,
    exit 2, never a traceback.
    (The one check of the option, for ``translate``, ``serve`` and ``controller``.)"""
    if pool is None:
        return
    try:
        parse_pool(pool)
    except ValueError as exc:
        fail(str(exc), 2)


def service_options(f):  # type: ignore[no-untyped-def]
    """The per-Gateway Services options, shared by ``translate`` and ``controller``."""
    lo, hi = DEFAULT_PORT_RANGE
    opts = [
        click.option("--gateway-services", is_flag=True,
                     help="Generate a LoadBalancer Service per Gateway (label "
                          "gateway.networking.k8s.io/gateway-name, spec.infrastructure "
                          "labels/annotations) and bind each Gateway's listeners on "
                          "internal ports of its own; status.addresses follow the "
                          "Service's load balancer."),
        click.option("--internal-ports", default=f"{lo}-{hi}", show_default=True,
                     metavar="LO-HI",
                     help="With --gateway-services: the range internal ports are taken "
                          "from (one per Gateway and listener port)."),
        click.option("--address-fallback", "address_fallback", multiple=True,
                     metavar="ADDR",
                     help="With --gateway-services: status.addresses of a Gateway whose "
                          "Service has no load-balancer address yet (repeatable; an IP or "
                          "a hostname)."),
        click.option("--service-selector", "service_selector", multiple=True,
                     metavar="KEY=VALUE",
                     help="With --gateway-services: a label of the rauta pods, the "
                          "Services' selector (repeatable)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def service_mode(params: dict[str, object]) -> ServiceMode | None:
    """The ``ServiceMode`` of a command's ``service_options`` values (taken out of
    ``params``), or None without ``--gateway-services``; a bad value is a usage error
    (one line, exit 2)."""
    enabled = params.pop("gateway_services")
    ports = str(params.pop("internal_ports"))
    fallback = tuple(str(a) for a in params.pop("address_fallback"))  # type: ignore[attr-defined]
    selector_args = tuple(str(a) for a in params.pop("service_selector"))  # type: ignore[attr-defined]
    if not enabled:
        return None
    try:
        port_range = parse_port_range(ports)
    except ValueError as exc:
        fail(str(exc), 2)
    selector: dict[str, str] = {}
    for item in selector_args:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--service-selector {item!r} is not KEY=VALUE", 2)
        selector[key.strip()] = value.strip()
    if any(not a.strip() for a in fallback):
        fail("--address-fallback needs an IP address or a hostname, not ''", 2)
    return ServiceMode(port_range=port_range,
                       fallback=tuple(dict.fromkeys(fallback_address(a) for a in fallback)),
                       selector=tuple(sorted(selector.items())))


def proxy_settings(kw: dict[str, object], **base: Any) -> ProxySettings:
    """Take the ``proxy_options`` values (but ``--grace``, which is ``base``'s ``drain``)
    out of a command's keyword arguments: the one ``ProxySettings`` of the mode. More
    than one worker with ``--observe`` or ``--access-log -`` is a usage error."""
    from rauta.settings import ProxySettings

    workers = int(kw.pop("workers"))  # type: ignore[call-overload]
    if workers > 1:
        params = click.get_current_context().params
        if params.get("observe"):
            raise click.UsageError(f"--observe is not available with --workers {workers} "
                                   "(one data-plane process only)")
        if params.get("access_log") == "-":
            raise click.UsageError(f"--access-log - is not available with --workers "
                                   f"{workers}: give a file (every worker appends to it)")
    return ProxySettings.from_flat({k: kw.pop(k) for k in PROXY_SETTINGS}, workers=workers,
                                   **base)


@click.group()
@click.version_option(package_name="rauta",
                      message=f"%(prog)s %(version)s\n{_compiled.describe()}")
def main() -> None:
    """rauta: a Gateway API controller with an in-process L7 proxy.

    The event loop is uvloop on Linux; RAUTA_LOOP=asyncio selects asyncio's own.
    """
    try:
        runloop.loop_factory()  # a bad RAUTA_LOOP is a one-line error, before any work
    except runloop.LoopChoiceError as exc:
        raise click.UsageError(str(exc)) from None


@main.command("translate")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--controller-name", default=DEFAULT_CONTROLLER, show_default=True,
              help="GatewayClass controllerName that rauta owns.")
@click.option("--address-pool", default=None, metavar="CIDR",
              help="Give each Gateway its own address from this pool (e.g. 127.0.1.0/24); "
                   "without it every Gateway shares the listen host.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
@click.option("--strict", is_flag=True,
              help="Unknown fields are errors (exit 2) instead of warnings.")
@service_options
def translate_cmd(files: tuple[str, ...], controller_name: str, address_pool: str | None,
                  as_json: bool, strict: bool, **services: object) -> None:
    """Print the RouterConfig and statuses rauta computes for Gateway API YAML FILES.

    The packaged quickstart example has placeholders: render it first with
    `rauta quickstart --dir DIR --render-only`."""
    check_pool(address_pool)
    mode = service_mode(services)
    try:
        doc = translate_files(list(files), controller_name, address_pool, strict=strict,
                              warn=lambda line: click.echo(f"rauta: warning: {line}", err=True),
                              gateway_services=mode)
    except LoadError as exc:
        click.echo(f"rauta: {exc}", err=True)
        hint = placeholder_hint(list(files))
        if hint:
            click.echo(f"rauta: hint: {hint}", err=True)
        sys.exit(2)
    click.echo(json.dumps(doc, indent=2) if as_json else dump_yaml(doc), nl=False)


@main.command("serve")
@click.option("--config", "paths", multiple=True, required=True, type=click.Path(exists=True),
              help="YAML file or directory of Gateway API, Service and EndpointSlice objects.")
@click.option("--admin", default="127.0.0.1:9901", show_default=True, callback=check_admin,
              help="Admin server HOST:PORT (/healthz /readyz /metrics /config /status).")
@click.option("--listen-host", default="127.0.0.1", show_default=True,
              help="Address the proxy's listeners bind to.")
@click.option("--status-file", type=click.Path(), default=None,
              help="Also write the statuses rauta computes to this YAML file.")
@click.option("--controller-name", default=DEFAULT_CONTROLLER, show_default=True,
              help="GatewayClass controllerName that rauta owns.")
@click.option("--hash-on", default="flow", show_default=True, callback=check_hash_on,
              help="Maglev key: flow, client-ip or header:NAME.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.option("--strict", is_flag=True,
              help="Unknown fields make a file invalid (its last good version is kept) "
                   "instead of a warning.")
@access_log_option
@click.option("--address-pool", default=None, metavar="CIDR",
              help="Give each Gateway its own address from this pool (e.g. 127.0.1.0/24); "
                   "without it every Gateway is served on --listen-host.")
@observe_options
@proxy_options
def serve_cmd(paths: tuple[str, ...], admin: str, listen_host: str, status_file: str | None,
              controller_name: str, grace: float, hash_on: str, verbose: bool, strict: bool,
              access_log: str | None, address_pool: str | None, observe: str | None,
              observe_out: str, observe_window: float, **settings: object) -> None:
    """Serve traffic from Gateway API YAML files, reloading them on change.

    Write config files atomically (a temporary file renamed over the config); a file
    written in place is applied once it has been stable briefly, and an emptied file's
    objects are deleted only after it stayed empty for 2 s."""
    from pathlib import Path

    from rauta.serve import StartupError, serve

    check_pool(address_pool)
    setup_logging(verbose)
    tune_gc()
    obs = observe_settings(observe, observe_out, observe_window)
    try:
        code = runloop.run(serve(
            list(paths), admin=admin, address_pool=address_pool, **obs,
            status_file=Path(status_file) if status_file else None,
            controller_name=controller_name, strict=strict,
            settings=proxy_settings(settings, host=listen_host, hash_on=hash_on,
                                    access_log=access_log, drain=grace)))
    except StartupError as exc:
        fail(str(exc))
    sys.exit(code)


@main.command("quickstart")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None,
              help="Where to write the editable example config (default: a temp dir).")
@click.option("--port", default=8080, show_default=True, help="Listener port (or a free one).")
@click.option("--admin-port", default=9901, show_default=True,
              help="Admin server port (or a free one).")
@click.option("--render-only", is_flag=True,
              help="Only write the example config (placeholders filled in) to --dir and exit.")
def quickstart_cmd(directory: str | None, port: int, admin_port: int, render_only: bool) -> None:
    """Start demo backends and serve an example Gateway/HTTPRoute set on loopback."""
    from pathlib import Path

    from rauta.quickstart import prepare_dir, quickstart, write_example
    from rauta.serve import StartupError

    try:
        workdir = prepare_dir(Path(directory) if directory else None)
    except StartupError as exc:
        fail(str(exc))
    if render_only:
        click.echo(write_example(workdir, port, admin_port))
        sys.exit(0)
    setup_logging(False)
    try:
        sys.exit(runloop.run(quickstart(workdir, port, admin_port)))
    except StartupError as exc:
        fail(str(exc))


@main.command("controller")
@click.option("--kubeconfig", default=None, type=click.Path(exists=True),
              help="Kubeconfig file (default: in-cluster config, then ~/.kube/config).")
@click.option("--namespace", default=None, help="Watch only this namespace.")
@click.option("--admin", default="127.0.0.1:9901", show_default=True, callback=check_admin,
              help="Admin server HOST:PORT (/healthz /readyz /metrics /config).")
@click.option("--listen-host", default="0.0.0.0", show_default=True,
              help="Address the proxy's listeners bind to.")
@click.option("--gateway-address", "addresses", multiple=True,
              help="Address written to Gateway status.addresses (repeatable).")
@click.option("--controller-name", default=DEFAULT_CONTROLLER, show_default=True,
              help="GatewayClass controllerName that rauta owns.")
@click.option("--lease-namespace", default="default", show_default=True,
              help="Namespace of the leader-election Lease.")
@click.option("--lease-name", default="rauta-controller", show_default=True,
              help="Name of the leader-election Lease.")
@click.option("--lease-duration", default=15.0, show_default=True,
              help="Leader-election lease duration in seconds.")
@click.option("--identity", default=None, help="Leader election identity (default host-pid).")
@click.option("--hash-on", default="flow", show_default=True, callback=check_hash_on,
              help="Maglev key: flow, client-ip or header:NAME.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.option("--address-pool", default=None, metavar="CIDR",
              help="Give each Gateway its own address from this pool (its status.addresses); "
                   "not with --gateway-address.")
@click.option("--strict", is_flag=True,
              help="Unknown fields of watched objects are errors (the object's last good "
                   "version is kept) instead of warnings.")
@access_log_option
@service_options
@observe_options
@proxy_options
def controller_cmd(kubeconfig: str | None, namespace: str | None, admin: str, listen_host: str,
                   addresses: tuple[str, ...], controller_name: str, lease_namespace: str,
                   lease_name: str, lease_duration: float, identity: str | None, hash_on: str,
                   verbose: bool, address_pool: str | None, strict: bool,
                   access_log: str | None, observe: str | None,
                   observe_out: str, observe_window: float, grace: float,
                   **settings: object) -> None:
    """Run as a Gateway API controller against a Kubernetes API server.

    With --gateway-services every Gateway gets a LoadBalancer Service of its own (created,
    updated and deleted by the leader; garbage-collected with its Gateway) whose ports
    map the listener ports to internal ports this proxy binds for that Gateway alone."""

    from rauta.app import StartupError
    from rauta.controller import run_controller

    check_pool(address_pool)
    services = service_mode(settings)
    if address_pool and addresses:
        raise click.UsageError("--address-pool and --gateway-address exclude each other")
    if services is not None and addresses:
        raise click.UsageError("--gateway-services and --gateway-address exclude each other "
                               "(use --address-fallback)")
    setup_logging(verbose)
    tune_gc()
    obs = observe_settings(observe, observe_out, observe_window)
    mode = proxy_settings(settings, host=listen_host, hash_on=hash_on, access_log=access_log,
                          drain=grace)
    try:
        code = runloop.run(run_controller(
            address_pool=address_pool, gateway_services=services, strict=strict, **obs,
            kubeconfig=kubeconfig, admin=admin, namespace=namespace,
            controller_name=controller_name, addresses=list(addresses),
            lease_namespace=lease_namespace, lease_name=lease_name,
            lease_duration=lease_duration, identity=identity, settings=mode))
    except StartupError as exc:
        fail(str(exc))
    sys.exit(code)


@main.command("record")
@click.option("--kubeconfig", default=None, type=click.Path(exists=True),
              help="Kubeconfig file (default: in-cluster config, then ~/.kube/config).")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Scenario file to write.")
@click.option("--namespace", default=None, help="Record only this namespace.")
@click.option("--duration", default=None, type=float, help="Stop after this many seconds.")
def record_cmd(kubeconfig: str | None, out: str, namespace: str | None,
               duration: float | None) -> None:
    """Record the API server's watch events into a scenario file (Secret data redacted)."""
    from pathlib import Path

    from rauta.controller import record

    setup_logging(False)
    sys.exit(runloop.run(record(kubeconfig=kubeconfig, out=Path(out), namespace=namespace,
                                duration=duration)))


@main.command("replay")
@click.argument("scenarios", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-v", "--verbose", is_flag=True, help="Log what the controller does.")
def replay_cmd(scenarios: tuple[str, ...], verbose: bool) -> None:
    """Replay scenario files through the real reconciler and proxy on loopback."""
    from pathlib import Path

    from rauta.replay import replay_text
    from rauta.scenario import ScenarioError

    logging_level_quiet(verbose)
    failed = 0
    for name in scenarios:
        try:
            text = Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            click.echo(f"rauta: {name}: cannot read: {exc}", err=True)
            sys.exit(2)
        try:
            report = runloop.run(replay_text(text, name))
        except ScenarioError as exc:
            click.echo(f"rauta: {exc}", err=True)
            sys.exit(2)
        failed += report.failed > 0
    sys.exit(1 if failed else 0)


def logging_level_quiet(verbose: bool) -> None:
    import logging

    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def tune_gc() -> None:
    """Fewer, cheaper garbage collections for a long-running server: everything alive at
    start-up (modules, the initial config) leaves the collector's view, and young
    collections run less often (measured: steadier translate and proxy tail latency)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def setup_logging(verbose: bool = False) -> None:
    import logging

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


main.add_command(__import__("rauta.observe.command", fromlist=["observe_cmd"]).observe_cmd)

if __name__ == "__main__":
    main()
