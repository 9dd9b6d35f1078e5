# Everything a fresh Debian 12 machine needs: `make demo` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
SYSTEM_PACKAGES := mosquitto mosquitto-clients libcoap3-bin redis-server nodejs
# The clustered broker of the fleet tests: aedes nodes over Redis, installed here.
CLUSTER := bench/cluster
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: setup system-packages lint test demo bench soak fleet clean

setup: system-packages $(VENV)/.installed $(CLUSTER)/node_modules/.installed

system-packages:
	@missing=""; \
	for pkg in $(SYSTEM_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi
	@# Debian's nodejs comes without npm; a nodejs from elsewhere (NodeSource) has its own.
	@command -v npm >/dev/null || { \
		echo "installing system packages: npm"; \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q npm; \
	}

# The versions pinned in package-lock.json accept the Node.js 18 of Debian 12.
$(CLUSTER)/node_modules/.installed: $(CLUSTER)/package.json $(CLUSTER)/package-lock.json
	npm ci --prefix $(CLUSTER) --no-audit --no-fund --loglevel=error
	touch $@

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Two workers: most tests wait on serial pacing and timeouts, not on the CPU.
test: lint
	$(BIN)/pytest -n 2

demo: setup
	$(BIN)/mqtt-coap-bridge demo

bench: setup
	$(BIN)/python -m bench.run

soak: setup
	$(BIN)/python -m bench.soak

fleet: setup
	$(BIN)/python -m bench.fleet

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info
