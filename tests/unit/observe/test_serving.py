"""``rauta.observe.serving`` without BPF: which modes may start, and the configured defaults."""

from __future__ import annotations

import pytest

from rauta.observe import serving


def test_check_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from rauta.observe import kernel

    assert serving.check(None, serving.KernelOptions()) is None
    assert serving.check("proxy", serving.KernelOptions()) is None
    assert "--observe-iface" in (serving.check("xdp", serving.KernelOptions()) or "")
    monkeypatch.setattr(kernel, "bpf_available", lambda: "no bcc (test)")
    reason = serving.check("both", serving.KernelOptions(ifaces=("lo",)))
    assert reason == "--observe both: BPF unavailable: no bcc (test)"
    monkeypatch.setattr(kernel, "bpf_available", lambda: None)
    reason = serving.check("xdp", serving.KernelOptions(ifaces=("nosuch0",)))
    assert reason is not None and reason.startswith("--observe-iface: no interface 'nosuch0'")
    assert serving.check("xdp", serving.KernelOptions(ifaces=("lo",))) is None


def test_configure_sets_the_defaults_explicit_arguments_win() -> None:
    class FakeProxy:
        config = None
        observer = None

    import io

    from prometheus_client import CollectorRegistry

    from rauta.model.config import RouterConfig

    p = FakeProxy()
    p.config = RouterConfig()  # type: ignore[assignment]
    try:
        serving.configure("both", serving.KernelOptions(ifaces=("x",)))
        with pytest.raises(ValueError, match="observe mode"):
            serving.proxy_pipeline(p, CollectorRegistry(), io.StringIO(), mode="nope")  # type: ignore[arg-type]
        pipe = serving.proxy_pipeline(p, CollectorRegistry(), io.StringIO(), mode="proxy")  # type: ignore[arg-type]
        assert pipe.mode == "proxy" and p.observer is pipe.hook
    finally:
        serving.configure(None)
    pipe = serving.proxy_pipeline(p, CollectorRegistry(), io.StringIO())  # type: ignore[arg-type]
    assert pipe.mode == "proxy"
