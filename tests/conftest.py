"""Shared fixtures: each real peer (simulator, CoAP servers, mosquitto) has its own module;
the daemon stack is assembled in `daemon` from the config, process, MQTT client and
CoAP peer modules beside it (registered here so pytest rewrites their asserts)."""

pytest_plugins = [
    "tests.fixtures.simulator",
    "tests.fixtures.coap_resources",
    "tests.fixtures.coap_servers",
    "tests.fixtures.oscore_server",
    "tests.fixtures.mosquitto",
    "tests.fixtures.aedes_cluster",
    "tests.fixtures.daemon_config",
    "tests.fixtures.daemon_process",
    "tests.fixtures.mqtt_client",
    "tests.fixtures.stack_coap",
    "tests.fixtures.daemon",
]
