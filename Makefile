# llmserve.cluster: `make demo` (a real deployment on the local test bed) and `make test` (every test).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
TESTBED := $(BIN)/python tests/testbed/testbed.py
COLLECTION_LINK := .collections/ansible_collections/llmserve/cluster
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# the test bed's vault password opens its inventory; set only where the bed exists
BED_VAULT := ANSIBLE_VAULT_PASSWORD_FILE=$(CURDIR)/.testbed/secrets/vault_password
export PATH := $(BIN):$(PATH)

VLLM_IMAGE := llmserve/vllm-cpu:0.32.0
SIM_IMAGE := llmserve/engine-sim:0.1.0
ROUTER_IMAGE := llmserve/vllm-router:0.1.17
NGINX_IMAGE := llmserve/nginx:1.22
MINDIE_IMAGE := llmserve/mindie-sim:0.1.0
XINFERENCE_IMAGE := llmserve/xinference-cpu:4.1.0
XINFERENCE_SKEW_IMAGE := llmserve/xinference-skew:4.0.0
GPUSTACK_IMAGE := llmserve/gpustack:2.3.0
POSTGRES_IMAGE := llmserve/postgres:15
HAPROXY_IMAGE := llmserve/haproxy:2.6
BASE_IMAGE := llmserve-testbed/base:bookworm
# the scenarios of make test (extensions/molecule/*)
MOLECULE_SCENARIOS := container_host mindie omni_2p1d ray xinference gpustack

.PHONY: help demo test machine venv collection testbed testbed-down images images-bed images-late image-vllm image-sim \
        image-router image-nginx image-mindie image-xinference image-gpustack push checks lint sanity unit integration \
        molecule clean

help:
	@echo "make demo   deploy a real 2P1D vLLM cluster with this collection onto the local test bed and ask it"
	@echo "make test   lint, sanity, unit and molecule tests"
	@echo "make testbed-down   remove the test bed (add PURGE=1 to drop its volumes and state)"

# ---------------------------------------------------------------- set-up
machine:
	@tests/testbed/prepare-machine.sh

$(VENV)/.done: requirements/dev.txt
	@echo "[venv] installing the pinned toolchain into $(VENV) (a few minutes the first time)"
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q -r requirements/dev.txt 2>&1 | { grep -v 'is ignored: it is neither' || true; }
	@touch $@

venv: $(VENV)/.done

# Ansible finds this checkout as the collection llmserve.cluster (ansible.cfg: collections_path).
collection:
	@mkdir -p $(dir $(COLLECTION_LINK))
	@ln -sfn ../../.. $(COLLECTION_LINK)

testbed: venv
	@$(TESTBED) up

testbed-down: venv
	@$(TESTBED) down $(if $(PURGE),--purge)

# ---------------------------------------------------------------- images (built locally, cached by docker)
# one after the other (each starts from the same base image): those the integration tests need, then the rest
images: images-bed images-late

images-bed: venv
	@$(MAKE) --no-print-directory -j1 image-vllm image-sim image-router image-nginx image-mindie

images-late: venv
	@$(MAKE) --no-print-directory -j1 image-xinference image-gpustack

image-vllm: venv
	@$(TESTBED) base-image
	@images/vllm-cpu/prepare-context.sh
	@echo "[images] $(VLLM_IMAGE) (about 10 minutes cold, seconds when cached)"
	@docker build --network host -q -t $(VLLM_IMAGE) images/vllm-cpu >/dev/null

image-sim: venv
	@$(TESTBED) base-image
	@echo "[images] $(SIM_IMAGE)"
	@docker build -q -t $(SIM_IMAGE) tests/images/engine-sim >/dev/null

image-router: venv
	@$(TESTBED) base-image
	@cp /etc/ssl/certs/ca-certificates.crt images/vllm-router/ca-certificates.crt
	@echo "[images] $(ROUTER_IMAGE)"
	@docker build --network host -q -t $(ROUTER_IMAGE) images/vllm-router >/dev/null

image-nginx: venv
	@$(TESTBED) base-image
	@echo "[images] $(NGINX_IMAGE)"
	@docker build --network host -q -t $(NGINX_IMAGE) images/nginx >/dev/null

image-mindie: venv
	@$(TESTBED) base-image
	@echo "[images] $(MINDIE_IMAGE)"
	@docker build -q -t $(MINDIE_IMAGE) tests/images/mindie-sim >/dev/null

# Xinference's CPU image, and the same with another version for the version-skew check (one small layer)
image-xinference: venv
	@$(TESTBED) base-image
	@images/vllm-cpu/prepare-context.sh images/xinference-cpu/context >/dev/null
	@echo "[images] $(XINFERENCE_IMAGE) (about 10 minutes cold, seconds when cached)"
	@docker build --network host -q -t $(XINFERENCE_IMAGE) images/xinference-cpu >/dev/null
	@docker build -q -t $(XINFERENCE_SKEW_IMAGE) tests/images/xinference-skew >/dev/null

# GPUStack from PyPI, and PostgreSQL and HAProxy from Debian for its database and load balancer
image-gpustack: venv
	@$(TESTBED) base-image
	@cp /etc/ssl/certs/ca-certificates.crt images/gpustack/ca-certificates.crt
	@echo "[images] $(GPUSTACK_IMAGE) $(POSTGRES_IMAGE) $(HAPROXY_IMAGE) (about 5 minutes cold)"
	@docker build --network host -q -t $(GPUSTACK_IMAGE) images/gpustack >/dev/null
	@docker build --network host -q -t $(POSTGRES_IMAGE) images/postgres >/dev/null
	@docker build --network host -q -t $(HAPROXY_IMAGE) images/haproxy >/dev/null

# ---------------------------------------------------------------- the main job
demo: testbed collection image-vllm image-router
	@$(TESTBED) push $(VLLM_IMAGE) $(ROUTER_IMAGE)
	@$(BED_VAULT) ansible-playbook -i .testbed/inventory -i tests/testbed/inventories/testbed_2p1d tests/testbed/demo.yml

# ---------------------------------------------------------------- tests
# The images build (mostly downloads and unpacking) while lint, sanity and the unit tests run, and the last ones
# while the integration tests run; then the scenarios, one at a time.
test: venv collection
	@start=$$SECONDS; $(MAKE) --no-print-directory -j2 --output-sync=target checks images-bed; \
	    echo "[test] lint, sanity, unit and the images of the integration tests: $$((SECONDS - start)) s"
	@start=$$SECONDS; $(MAKE) --no-print-directory -j2 --output-sync=target integration images-late; \
	    echo "[test] integration tests and the other images: $$((SECONDS - start)) s"
	@start=$$SECONDS; $(MAKE) --no-print-directory molecule; echo "[test] molecule: $$((SECONDS - start)) s"

checks:
	@$(MAKE) --no-print-directory -j1 lint sanity unit

lint: venv collection
	@echo "[test] ansible-lint (production profile)"
	@ansible-lint --profile production

sanity: venv
	@echo "[test] ansible-test sanity on the built collection"
	@tests/sanity.sh

unit: venv collection
	@echo "[test] unit tests"
	@$(BIN)/python -m pytest -q -n 2 tests/unit

integration: testbed collection images-bed
	@echo "[test] integration tests on the test bed"
	@$(TESTBED) push $(VLLM_IMAGE) $(ROUTER_IMAGE) $(SIM_IMAGE) $(NGINX_IMAGE)
	@LLMSERVE_REQUIRE_TESTBED=1 $(BIN)/python -m pytest -q --durations=0 tests/integration

molecule: testbed collection images
	@echo "[test] molecule scenarios on the test bed"
	@$(TESTBED) push $(SIM_IMAGE) $(ROUTER_IMAGE) $(VLLM_IMAGE) $(NGINX_IMAGE) $(MINDIE_IMAGE) $(XINFERENCE_IMAGE) \
	                 $(XINFERENCE_SKEW_IMAGE) $(GPUSTACK_IMAGE) $(POSTGRES_IMAGE) $(HAPROXY_IMAGE)
	@# `make demo` leaves its cluster running; the scenarios check that the bed holds nothing of ours after them
	@$(BED_VAULT) ansible-playbook -i .testbed/inventory -i tests/testbed/inventories/testbed_2p1d playbooks/site.yml \
		--tags clean_up >/dev/null
	@for s in $(MOLECULE_SCENARIOS); do start=$$SECONDS; $(BIN)/molecule test -s $$s || exit 1; \
	    echo "[test] molecule $$s: $$((SECONDS - start)) s"; done

clean: testbed-down
	@rm -rf build .collections
