"""Operations: logging set-up, the systemd notification client, the Prometheus metrics
and the `<base>/info` object."""
