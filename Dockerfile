# The modelfleet image: `modelfleet run` (the operator) and `modelfleet gateway-sync` (the
# gateway pods' sidecar), with the Envoy binary the operator validates every config with.
#
# `make image` builds it with buildah (no daemon, as root, vfs storage) from a context that
# image/build.sh prepares; nothing is fetched during the build itself:
#   build/image/rootfs.tar  Debian bookworm (minbase) with python3 and ca-certificates,
#                           made by mmdebstrap from Debian's archive
#   build/image/wheels/     every wheel of requirements.lock (checked against its hashes),
#                           modelfleet's own wheel (product only, no test bed) and pip's
FROM scratch AS base
ADD build/image/rootfs.tar /

FROM base AS build
COPY build/image/wheels/ /wheels/
# pip runs from its wheel: the image's venv gets no pip of its own.
RUN python3 -m venv --without-pip /opt/modelfleet \
 && /opt/modelfleet/bin/python /wheels/pip.whl/pip install --no-cache-dir --no-index \
      --disable-pip-version-check --find-links /wheels --require-hashes \
      --only-binary :all: -r /wheels/requirements.lock \
 && /opt/modelfleet/bin/python /wheels/pip.whl/pip install --no-cache-dir --no-index \
      --disable-pip-version-check --no-deps /wheels/modelfleet-*.whl \
 && /opt/modelfleet/bin/envoy --version \
 && /opt/modelfleet/bin/modelfleet --help >/dev/null

FROM base
# The chart runs every container as this user (with a read-only root filesystem);
# OpenShift may run it as any other UID, which works as well: nothing is written outside
# the volumes the chart mounts.
RUN echo 'modelfleet:x:10001:10001::/nonexistent:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'modelfleet:x:10001:' >> /etc/group
COPY --from=build /opt/modelfleet /opt/modelfleet
ENV PATH=/opt/modelfleet/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
ENTRYPOINT ["modelfleet"]
CMD ["run", "--all-namespaces"]
