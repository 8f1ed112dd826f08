"""The ``rauta`` command line.

Role: the user-facing entry point. Every subcommand runs the same library code the tests
run (``translate`` is exactly what ``tests/golden`` checks).

Rules:
- Bad input is one line on stderr naming the file, object and field, and exit code 2;
  never a traceback.
- Output goes to stdout as YAML (or JSON with ``--json``), in the model's own order.
"""

from __future__ import annotations

import json
import sys

import click
import yaml

from rauta import runloop
from rauta.loader import LoadError, load_snapshot
from rauta.model.addresses import parse_pool
from rauta.model.graph import DEFAULT_CONTROLLER
from rauta.model.render import document
from rauta.model.translate import translate


def dump_yaml(data: object) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def translate_files(paths: list[str], controller_name: str = DEFAULT_CONTROLLER,
                    address_pool: str | None = None) -> dict[str, object]:
    """Load ``paths`` and translate them: the document ``rauta translate`` prints."""
    return document(translate(load_snapshot(paths), controller_name=controller_name,
                              address_pool=address_pool))


def check_address_pool(pool: str | None) -> None:
    """Exit 2 with one line on stderr when ``pool`` is not a CIDR."""
    if pool is None:
        return
    try:
        parse_pool(pool)
    except ValueError as exc:
        click.echo(f"rauta: {exc}", err=True)
        sys.exit(2)


def proxy_options(f):  # type: ignore[no-untyped-def]
    """The data plane's hardening settings, shared by ``serve`` and ``controller``."""
    opts = [
        click.option("--trusted-hops", default=0, show_default=True, type=click.IntRange(0, 32),
                     help="Proxies in front of rauta trusted to set X-Forwarded-For/Forwarded; "
                          "0 treats rauta as the edge and replaces them."),
        click.option("--underscores-in-headers", is_flag=True,
                     help="Forward request header names containing '_' (dropped by default)."),
        click.option("--allow-trace", is_flag=True, help="Forward TRACE (405 by default)."),
        click.option("--max-connections", default=10000, show_default=True,
                     type=click.IntRange(1), help="Client connections at most, all ports."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def observe_options(f):  # type: ignore[no-untyped-def]
    """The observer's options, shared by ``serve`` and ``controller``."""
    opts = [
        click.option("--observe", type=click.Choice(["proxy"]), default=None,
                     help="Observe traffic: per-route baselines and anomaly events "
                          "(slow_response, error_spike, connect_failure, resolved) from the "
                          "proxy's own upstream exchanges. The eBPF modes (xdp, both) are "
                          "not built yet."),
        click.option("--observe-out", default="-", show_default=True, metavar="PATH",
                     help="Where the observer writes its JSON lines ('-' is stdout)."),
        click.option("--observe-window", default=10.0, show_default=True,
                     type=click.FloatRange(0.1, 3600),
                     help="The observer's window in seconds."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def observe_settings(observe: str | None, observe_out: str,
                     observe_window: float) -> dict[str, object]:
    """The observer's keyword arguments; an unwritable ``--observe-out`` is a usage error."""
    if observe and observe_out != "-":
        try:
            open(observe_out, "a").close()
        except OSError as exc:
            raise click.BadParameter(f"cannot write {observe_out}: {exc.strerror}",
                                     param_hint="--observe-out") from None
    return {"observe": observe, "observe_out": observe_out, "observe_window": observe_window}


def check_pool(pool: str | None) -> None:
    """A bad ``--address-pool`` is a usage error (one line, exit 2), never a traceback."""
    if pool is None:
        return
    from rauta.model.addresses import parse_pool

    try:
        parse_pool(pool)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--address-pool") from None


def proxy_settings(kw: dict[str, object]) -> dict[str, object]:
    """Take the ``proxy_options`` values out of a command's keyword arguments."""
    return {k: kw.pop(k) for k in ("trusted_hops", "underscores_in_headers", "allow_trace",
                                   "max_connections")}


@click.group()
@click.version_option(package_name="rauta")
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
def translate_cmd(files: tuple[str, ...], controller_name: str, address_pool: str | None,
                  as_json: bool) -> None:
    """Print the RouterConfig and statuses rauta computes for Gateway API YAML FILES."""
    check_address_pool(address_pool)
    try:
        doc = translate_files(list(files), controller_name, address_pool)
    except LoadError as exc:
        click.echo(f"rauta: {exc}", err=True)
        sys.exit(2)
    click.echo(json.dumps(doc, indent=2) if as_json else dump_yaml(doc), nl=False)


@main.command("serve")
@click.option("--config", "paths", multiple=True, required=True, type=click.Path(exists=True),
              help="YAML file or directory of Gateway API, Service and EndpointSlice objects.")
@click.option("--admin", default="127.0.0.1:9901", show_default=True,
              help="Admin server address (/healthz /readyz /metrics /config).")
@click.option("--listen-host", default="127.0.0.1", show_default=True,
              help="Address the proxy's listeners bind to.")
@click.option("--status-file", type=click.Path(), default=None,
              help="Also write the statuses rauta computes to this YAML file.")
@click.option("--controller-name", default=DEFAULT_CONTROLLER, show_default=True)
@click.option("--grace", default=10.0, show_default=True, help="Drain period in seconds.")
@click.option("--hash-on", default="flow", show_default=True,
              help="Maglev key: flow, client-ip or header:NAME.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.option("--address-pool", default=None, metavar="CIDR",
              help="Give each Gateway its own address from this pool (e.g. 127.0.1.0/24); "
                   "without it every Gateway is served on --listen-host.")
@observe_options
@proxy_options
def serve_cmd(paths: tuple[str, ...], admin: str, listen_host: str, status_file: str | None,
              controller_name: str, grace: float, hash_on: str, verbose: bool,
              address_pool: str | None, observe: str | None, observe_out: str,
              observe_window: float, **settings: object) -> None:
    """Serve traffic from Gateway API YAML files, reloading them on change."""
    from pathlib import Path

    from rauta.serve import serve

    check_pool(address_pool)
    setup_logging(verbose)
    tune_gc()
    code = runloop.run(serve(list(paths), admin=admin, host=listen_host,
                             address_pool=address_pool,
                             **observe_settings(observe, observe_out, observe_window),
                             status_file=Path(status_file) if status_file else None,
                             controller_name=controller_name, grace=grace, hash_on=hash_on,
                             proxy_settings=proxy_settings(settings)))
    sys.exit(code)


@main.command("quickstart")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None,
              help="Where to write the editable example config (default: a temp dir).")
@click.option("--port", default=8080, show_default=True, help="Listener port (or a free one).")
@click.option("--admin-port", default=9901, show_default=True)
def quickstart_cmd(directory: str | None, port: int, admin_port: int) -> None:
    """Start demo backends and serve an example Gateway/HTTPRoute set on loopback."""
    from pathlib import Path

    from rauta.quickstart import quickstart

    setup_logging(False)
    sys.exit(runloop.run(quickstart(Path(directory) if directory else None, port, admin_port)))


@main.command("controller")
@click.option("--kubeconfig", default=None, type=click.Path(exists=True),
              help="Kubeconfig file (default: in-cluster config, then ~/.kube/config).")
@click.option("--namespace", default=None, help="Watch only this namespace.")
@click.option("--admin", default="127.0.0.1:9901", show_default=True)
@click.option("--listen-host", default="0.0.0.0", show_default=True,
              help="Address the proxy's listeners bind to.")
@click.option("--gateway-address", "addresses", multiple=True,
              help="Address written to Gateway status.addresses (repeatable).")
@click.option("--controller-name", default=DEFAULT_CONTROLLER, show_default=True)
@click.option("--lease-namespace", default="default", show_default=True)
@click.option("--lease-name", default="rauta-controller", show_default=True)
@click.option("--lease-duration", default=15.0, show_default=True)
@click.option("--identity", default=None, help="Leader election identity (default host-pid).")
@click.option("--hash-on", default="flow", show_default=True)
@click.option("-v", "--verbose", is_flag=True)
@click.option("--address-pool", default=None, metavar="CIDR",
              help="Give each Gateway its own address from this pool (its status.addresses); "
                   "not with --gateway-address.")
@observe_options
@proxy_options
def controller_cmd(kubeconfig: str | None, namespace: str | None, admin: str, listen_host: str,
                   addresses: tuple[str, ...], controller_name: str, lease_namespace: str,
                   lease_name: str, lease_duration: float, identity: str | None, hash_on: str,
                   verbose: bool, address_pool: str | None, observe: str | None,
                   observe_out: str, observe_window: float, **settings: object) -> None:
    """Run as a Gateway API controller against a Kubernetes API server."""

    from rauta.controller import run_controller

    check_pool(address_pool)
    if address_pool and addresses:
        raise click.UsageError("--address-pool and --gateway-address exclude each other")
    setup_logging(verbose)
    tune_gc()
    obs = observe_settings(observe, observe_out, observe_window)
    sys.exit(runloop.run(run_controller(
        address_pool=address_pool, **obs,
        kubeconfig=kubeconfig, admin=admin, namespace=namespace, controller_name=controller_name,
        listen_host=listen_host, addresses=list(addresses), lease_namespace=lease_namespace,
        lease_name=lease_name, lease_duration=lease_duration, identity=identity,
        hash_on=hash_on, proxy_settings=proxy_settings(settings))))


@main.command("record")
@click.option("--kubeconfig", default=None, type=click.Path(exists=True))
@click.option("--out", required=True, type=click.Path(dir_okay=False))
@click.option("--namespace", default=None)
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


if __name__ == "__main__":
    main()
