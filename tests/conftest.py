"""Shared fixtures: each real peer (simulator, CoAP servers, mosquitto) has its own module."""

pytest_plugins = [
    "tests.fixtures.simulator",
    "tests.fixtures.coap_servers",
    "tests.fixtures.mosquitto",
    "tests.fixtures.daemon",
]
