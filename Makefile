# rauta developer entry points. `make test` is what CI runs (via .ci/run).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The demo's stamp: rauta and its runtime dependencies only (`make quickstart`). The full
# install ($(STAMP), with the dev extras) satisfies it too.
RUN_STAMP := $(VENV)/.installed-run
RUNTIME_DEPS = $(shell $(PYTHON) -c 'import tomllib; print(len(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' 2>/dev/null)

.PHONY: bpf test venv system lint typecheck lab conformance-build conformance unit quickstart goldens bench clean

# Debian packages the tests use: nginx-light (the side-by-side strictness judge) and wrk
# (benchmarks). Installed only when missing and when we are root (CI is); otherwise the
# tests that need them skip and say why.
SYSTEM_PKGS := nginx-light wrk

# The request path's modules that pip compiles with mypyc (rauta/_compiled.py): an edit
# rebuilds them (until then the stale build is never used: they run as Python).
COMPILED_SRC := rauta/_compiled.py rauta/proxy/server.py rauta/proxy/exchange.py \
	rauta/proxy/upstream.py rauta/proxy/headers.py rauta/proxy/request.py rauta/model/routing.py

$(STAMP): pyproject.toml setup.py rauta/model/_maglev_fill.c $(COMPILED_SRC)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP) $(RUN_STAMP)

# Not quiet: a cold install takes a minute or two, and pip's lines show what it is doing.
$(RUN_STAMP): pyproject.toml setup.py rauta/model/_maglev_fill.c $(COMPILED_SRC)
	@test -x $(BIN)/python || { echo "quickstart: creating the virtualenv $(VENV)"; \
		$(PYTHON) -m venv $(VENV); }
	@echo "quickstart: installing rauta and its $(RUNTIME_DEPS) runtime dependencies (not the dev extras) into $(VENV) ..."
	$(BIN)/python -m pip install --disable-pip-version-check -e .
	@echo "quickstart: installed"
	@touch $(RUN_STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check rauta tests bench

typecheck: $(STAMP)
	$(BIN)/mypy rauta/model

# The real-API-server lab: kube-apiserver, kube-controller-manager and etcd built from Go
# modules (lab/go.mod), cached outside the repo by version (~5.5 min cold, <1 s warm).
# Without Go the real-API tests skip with a printed reason.
lab:
	@if command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ]; then \
		bash scripts/build-lab.sh; \
	else echo "lab: Go not found; the real-API-server tests will skip"; fi

# The official Gateway API conformance suite v1.6.3 (conformance/go.mod), unmodified: its
# test binary and echo-basic, cached outside the repo by version like the lab (~4 min cold
# at -p 1, <1 s warm). `make test` runs its GATEWAY-HTTP core profile through
# tests/e2e/test_conformance_core.py (which builds it); `make conformance` runs everything.
conformance-build:
	@if command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ]; then \
		bash scripts/build-conformance.sh; \
	else echo "conformance-build: Go not found" >&2; exit 3; fi

# The whole conformance run on the lab (root): lab + suite builds, then
# conformance/run_lab.py (lab, pod runner, rauta controller --address-pool, GatewayClass,
# scripts/run-conformance.sh). Writes conformance/reports/<version>/{rauta.yaml,summary.md}.
# Not part of `make test`. CONFORMANCE_ARGS goes to run_lab.py, e.g.
#   make conformance CONFORMANCE_ARGS='--timeout 25m -- --run-test=HTTPRouteSimpleSameNamespace'
CONFORMANCE_ARGS ?=
conformance: $(STAMP)
	bash scripts/build-lab.sh
	bash scripts/build-conformance.sh
	PYTHONPATH=$(CURDIR) $(BIN)/python conformance/run_lab.py $(CONFORMANCE_ARGS)

# The full suite: lint, strict types for the pure model, the lab build, then every test
# with the CI hypothesis profile (>= 200 examples per state machine).
system:
	@missing=""; for p in $(SYSTEM_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "system: installing$$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; }; \
	else echo "system: not root; missing$$missing (tests that need them will skip)"; fi

# The observer's kernel side: Debian's python3-bpfcc and kernel headers, the header links,
# tracefs, and the venv's bcc shim (scripts/setup-bpf.sh; never fails: without root or
# apt it says why, and the observer's e2e tests skip with that reason).
bpf: $(STAMP)
	bash scripts/setup-bpf.sh $(VENV)

test: system lint typecheck lab tools promtool bpf
	HYPOTHESIS_PROFILE=ci $(BIN)/python -m pytest -q -p no:cacheprovider tests
	@echo "the proxy and routing suites again, on the pure-Python request path (RAUTA_PURE=1):"
	RAUTA_PURE=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/unit/proxy \
		tests/unit/model/test_routing.py tests/unit/model/test_routing_hardening.py \
		tests/unit/model/test_routing_memo.py tests/unit/test_compiled.py

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

# The main job on the embedded default: demo backends + rauta serve on the example
# Gateway/HTTPRoute set (rauta/examples/quickstart.yaml); prints curl lines; Ctrl-C stops.
# Needs only the runtime install ($(RUN_STAMP)); `make test` installs the dev extras.
quickstart: $(RUN_STAMP)
	$(BIN)/rauta quickstart

goldens: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit/test_golden.py --update-goldens

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache

# ---------------------------------------------------------------- shipping artifacts
.PHONY: tools promtool deploy-check kind-e2e

# Render/check tools for deploy/, charts/rauta and the alert rules: kubectl and helm built
# from Go modules (tools/*/go.mod), cached outside the repo by version like the lab
# (scripts/build-tools.sh), and promtool extracted from Debian's prometheus package
# (scripts/get-promtool.sh). Without Go or apt-get the tests that need them skip.
tools:
	@if command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ]; then \
		bash scripts/build-tools.sh; \
	else echo "tools: Go not found; the render/dry-run tests will skip"; fi

promtool:
	@bash scripts/get-promtool.sh || echo "promtool: unavailable; the alert-rule checks will skip"

# The artifacts checked against the lab (tests/e2e/test_deploy.py) and statically.
deploy-check: $(STAMP) lab tools promtool
	$(BIN)/python -m pytest -q -p no:cacheprovider -rs tests/unit/test_deploy_static.py tests/e2e/test_deploy.py

# The kind tier (needs Docker): builds the image, loads it into kind, installs the CRDs and
# deploy/, applies examples/, checks statuses and traffic. Skips without Docker.
kind-e2e: $(STAMP)
	@if command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ]; then \
		BUILD_KIND=1 bash scripts/build-tools.sh; fi
	$(BIN)/python -m pytest -q -p no:cacheprovider -rs -s tests/e2e/kind
