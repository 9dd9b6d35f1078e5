"""Tools around the daemon: the request CLI, the demo, and loopback peers for tests."""
