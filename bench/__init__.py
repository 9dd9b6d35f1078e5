"""Benchmark and soak harness for the bridge: `python -m bench.run`, `python -m bench.soak`.

Everything here drives the daemon from the outside, as a deployment would: a private
mosquitto, an aiocoap server process, the L610 simulator and `python -m bridge run`,
each a separate process, talking only over MQTT, the pty and UDP. Two measure a part
in one process instead: `bench.floors` (the libraries' own cost) and `bench.modem_coap`
(the CoAP layer over the AT engine, the L610 driver and the simulator).
"""
