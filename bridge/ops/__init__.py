"""Operations: logging set-up and the systemd notification client."""
