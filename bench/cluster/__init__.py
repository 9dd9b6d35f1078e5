"""A clustered MQTT 3.1.1 broker on loopback: `redis-server` and aedes nodes over it.

`AedesCluster(workdir, nodes=3)` starts one Redis (no persistence to disk: it lives as
long as the cluster) and `nodes` aedes processes (`aedes-node.cjs`, Node.js resolving
the packages `make setup` installed beside it), each on its own stable loopback port.
The nodes share subscriptions, sessions and queued messages, so a client may move
from one node to another and find its session there. `cluster.nodes[i].kill()`
(SIGKILL) and `.start()` again keep the node's port. Leaving the `with` stops all.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import TracebackType

from bench.stack import Child, StackError, stable_tcp_port
from bridge.tools.loopback import wait_for_tcp

CLUSTER_DIR = Path(__file__).resolve().parent
NODE_SCRIPT = CLUSTER_DIR / "aedes-node.cjs"
START_TIMEOUT = 15.0


def _require(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise StackError(f"{program} is not installed; run `make setup`")
    return path


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        self.port = stable_tcp_port()
        args = [
            _require("redis-server"),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(workdir),
        ]  # fmt: skip
        self._child = Child("redis", args, workdir / "redis.log", subprocess.DEVNULL)

    def start(self) -> None:
        self._child.start()
        wait_for_tcp(self.port, START_TIMEOUT)

    def stop(self) -> None:
        self._child.stop()


class AedesNode:
    """One aedes process; `kill()` and `start()` keep its port."""

    def __init__(self, workdir: Path, name: str, redis_port: int) -> None:
        self.name = name
        self.port = stable_tcp_port()
        args = [_require("node"), str(NODE_SCRIPT), str(self.port), str(redis_port), name]
        self._child = Child(name, args, workdir / f"{name}.log", subprocess.DEVNULL)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._child.alive()

    def start(self) -> None:
        self._child.start()
        try:
            wait_for_tcp(self.port, START_TIMEOUT)
        except Exception as exc:
            self._child.kill()
            raise StackError(f"{self.name} did not start: {exc}\n{self.log_tail()}") from exc

    def kill(self) -> None:
        self._child.kill()

    def stop(self) -> None:
        self._child.stop()

    def log_tail(self, lines: int = 30) -> str:
        return self._child.log_tail(lines)


class AedesCluster:
    def __init__(self, workdir: Path, nodes: int = 3) -> None:
        if not (CLUSTER_DIR / "node_modules" / "aedes").is_dir():
            raise StackError(f"aedes is not installed in {CLUSTER_DIR}; run `make setup`")
        workdir.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(workdir)
        self.nodes = [
            AedesNode(workdir, f"node{index + 1}", self.redis.port) for index in range(nodes)
        ]

    @property
    def hosts(self) -> list[str]:
        """Every node as `host:port`, the form of `mqtt.hosts`."""
        return [node.address for node in self.nodes]

    def __enter__(self) -> AedesCluster:
        try:
            self.redis.start()
            for node in self.nodes:
                node.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
        self.redis.stop()
