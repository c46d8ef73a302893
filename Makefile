# ryu-si — every target sets up what it needs; safe to run again.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
APT_PACKAGES := openvswitch-switch mininet iputils-ping iperf3 netcat-openbsd tcpdump \
                nftables ethtool iproute2 python3-venv python3-dev gcc curl \
                chromium chromium-driver
STAMP := $(VENV)/.ryu-si-installed

.PHONY: install apt ovs-start demo test test-unit test-integration bench bench-peers peers-apt docs clean

install: apt $(STAMP)

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

# Debian's python sees Debian's mininet package; Ryu 4.34 builds only with setuptools<66.
$(STAMP): requirements.txt setup.cfg packaging/ryu_si_compat.pth
	test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q 'setuptools<66' wheel
	$(PY) -m pip install -q --no-build-isolation -r requirements.txt
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	site=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') && \
	  install -m 644 packaging/ryu_si_compat.pth "$$site/ryu_si_compat.pth"
	$(PY) -c 'import ryu.app.wsgi, mininet.net, ryu_si' 
	touch $(STAMP)

ovs-start: apt
	@ovs-vsctl --timeout=5 show >/dev/null 2>&1 || \
	  /usr/share/openvswitch/scripts/ovs-ctl --system-id=random start
	@ovs-vsctl --timeout=5 show >/dev/null

demo: install ovs-start
	$(PY) -m mininet_topos.demo

test: install ovs-start
	$(PYTEST) -q tests

test-unit: install
	$(PYTEST) -q tests/unit

test-integration: install ovs-start
	$(PYTEST) -q tests/integration

bench: install ovs-start
	$(PY) -m benchmarks.run

# The peers (OVN from Debian, Faucet in its own venv): not part of `make test`.
PEER_APT := ovn-central ovn-host
FAUCET_VENV := benchmarks/peers/.faucet-venv
FAUCET_VERSION := 1.10.12

bench-peers: install ovs-start peers-apt $(FAUCET_VENV)/.installed
	$(PY) -m benchmarks.peers $(PEERS_ARGS)

# The benchmark starts its own OVN daemons: the packages' services would program
# a br-int of the shared switch, so they are stopped right after installing.
peers-apt:
	@if ! dpkg-query -W -f='$${Status}' $(PEER_APT) 2>/dev/null | grep -q "ok installed.*ok installed"; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(PEER_APT); \
	  if [ -d /run/systemd/system ]; then systemctl disable --now ovn-host ovn-central; fi; \
	fi

$(FAUCET_VENV)/.installed:
	test -x $(FAUCET_VENV)/bin/python || /usr/bin/python3 -m venv $(FAUCET_VENV)
	$(FAUCET_VENV)/bin/pip install -q faucet==$(FAUCET_VERSION)
	$(FAUCET_VENV)/bin/faucet --version
	touch $@

docs: install
	$(PY) -m openflow_tables.docgen ryu_si/default_config.yaml > docs/pipeline.md

clean:
	-mn -c >/dev/null 2>&1
	rm -rf $(VENV) build *.egg-info .pytest_cache
