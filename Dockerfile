# rauta's container image. Targets:
#   rauta     (default) the controller: `rauta controller`, non-root (UID 10001), runs with
#             a read-only root filesystem; it writes nothing outside /tmp (an emptyDir in
#             deploy/), bytecode is compiled at build time.
#   observer  rauta plus Debian's python3-bpfcc (bcc) for the eBPF/XDP observer, which
#             needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (README "Deploying to a cluster").
#   docker build --target rauta -t rauta:0.1.0 .
#   docker build --target observer -t rauta-observer:0.1.0 .
# Not built in rauta's CI (no container runtime there): tests/unit/test_deploy_static.py
# checks these rules statically, the kind tier (tests/e2e/kind/) builds it.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- build: the virtualenv
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# A C compiler for rauta's Maglev fill accelerator and its mypyc-compiled request path
# (setup.py); it stays in this stage.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml setup.py README.md ./
COPY rauta ./rauta
# rauta is built into a wheel first (with its C accelerator, checked below); its
# dependencies install only from wheels (each has a manylinux wheel for CPython 3.11).
RUN python -m venv /opt/rauta \
 && /opt/rauta/bin/pip wheel --no-deps -w /tmp/wheels . \
 && /opt/rauta/bin/pip install --only-binary=:all: /tmp/wheels/rauta-*.whl \
 && /opt/rauta/bin/python -m compileall -q /opt/rauta/lib \
 && /opt/rauta/bin/python -c "import rauta.model.maglev as m; assert m.ACCELERATED" \
 && /opt/rauta/bin/python -c "import rauta._compiled as c; assert c.STATE == 'compiled', c.WHY" \
 && /opt/rauta/bin/rauta --version

# ---------------------------------------------------------------- rauta: the controller
FROM ${PYTHON_IMAGE} AS rauta
RUN groupadd --system --gid 10001 rauta \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin rauta
COPY --from=build /opt/rauta /opt/rauta
ENV PATH=/opt/rauta/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp \
    HOME=/tmp
WORKDIR /tmp
USER 10001:10001
EXPOSE 9901
ENTRYPOINT ["rauta"]
CMD ["controller", "--admin=0.0.0.0:9901"]

# ---------------------------------------------------------------- observer: rauta + bcc
FROM rauta AS observer
# Root inside the container: Kubernetes grants no ambient capabilities, so only UID 0 holds
# the three the DaemonSet adds (it drops every other one, deploy/components/observer).
USER 0:0
# python3-bpfcc is Debian's bcc for its own python3 (3.11 on bookworm, the same minor as
# the base image's): link its pure-Python `bcc` package into rauta's virtualenv; it loads
# libbcc.so through ctypes.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-bpfcc \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s /usr/lib/python3/dist-packages/bcc /opt/rauta/lib/python3.11/site-packages/bcc \
 && /opt/rauta/bin/python -c "import bcc"
ENTRYPOINT ["rauta"]
CMD ["observe"]

# ---------------------------------------------------------------- default target
FROM rauta
