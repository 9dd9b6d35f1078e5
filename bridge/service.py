"""The daemon: builds the layer stack from `Settings`, runs it, reloads and stops it.

`run_daemon` is `mqtt-coap-bridge run`. SIGTERM/SIGINT stop, SIGHUP re-reads the
config: an invalid one is refused (the old one keeps running, the problem goes to the
log and `health.config`); CoAP target rules, timeouts and logging apply live, any other
change restarts the layers in-process (`needs_restart`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable
from contextlib import AsyncExitStack
from typing import Any

from bridge.coap.oscore import SecurityContexts
from bridge.coap.router import Lane, ModemRouter
from bridge.config import ModemSettings, Settings, load_config
from bridge.errors import BridgeError, ConfigError
from bridge.lanes import LaneHooks, Lanes
from bridge.layer_settings import ReloadState, client_settings, front_settings, needs_restart
from bridge.mapping import CoapRequests, unsolicited_to_json
from bridge.modem.driver import ModemDriver
from bridge.modem.health import ModemCounters
from bridge.mqtt import MqttClient, MqttStats, RequestFront
from bridge.ops import sdnotify
from bridge.ops.info import info_object
from bridge.ops.logs import configure_logging
from bridge.ops.metrics import BridgeMetrics, MetricsServer

log = logging.getLogger(__name__)

_REFUSED = "reload refused: "


class Daemon:
    """One bridge process: the layer stack plus signal-driven reload and stop."""

    def __init__(
        self,
        config_path: str,
        settings: Settings,
        *,
        logging_override: bool,
        trace_at: str | None = None,
    ) -> None:
        self._config_path = config_path
        self._trace_at = trace_at
        self.settings = settings
        self._logging_override = logging_override
        self._started = time.monotonic()
        self._reload = ReloadState()
        self._stop = asyncio.Event()
        self._restart = asyncio.Event()
        self._handler: CoapRequests | None = None
        self._front: RequestFront[Any] | None = None
        self._router: ModemRouter | None = None
        self._lanes: Lanes | None = None
        self._counters: MqttStats | None = None
        # Created once: its answer counts and latencies outlive a restart of the layers.
        self._metrics = BridgeMetrics(self._metrics_health)
        # Per modem name: the counts of its drivers that have ended.
        self._ended_modems: dict[str, ModemCounters] = {}
        self._status_before_refusal = ""
        self._serving = False  # subscribed and answering requests
        self._client: MqttClient | None = None
        self._password = ""  # the password the running client connects with

    # -- signals -------------------------------------------------------------------------

    def request_stop(self) -> None:
        log.info("stop requested")
        self._stop.set()

    def request_reload(self) -> None:
        sdnotify.reloading()
        try:
            self._reload_config()
        finally:
            # Whatever happened, systemd must see the reload end (or it waits forever).
            sdnotify.ready()
        if self._front is not None:
            self._front.health_changed()

    def _reload_config(self) -> None:
        try:
            new = load_config(self._config_path)
            new_client = client_settings(new)  # the password file must be readable too
        except BridgeError as exc:
            problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
            self._reload.error = "; ".join(problems)
            log.error("reload refused, keeping the running config: %s", self._reload.error)
            if not sdnotify.last_status().startswith(_REFUSED):
                self._status_before_refusal = sdnotify.last_status()
            sdnotify.status(f"{_REFUSED}{self._reload.error}")
        else:
            if sdnotify.last_status().startswith(_REFUSED):
                sdnotify.status(self._status_before_refusal)
            self._reload = ReloadState(reloads=self._reload.reloads + 1)
            old, self.settings = self.settings, new
            if not self._logging_override:
                configure_logging(new.logging.level, new.logging.format)
            if needs_restart(old, new):
                log.info("config reloaded from %s; restarting the layers", self._config_path)
                self._restart.set()
            else:
                if self._handler is not None:
                    self._handler.settings = new
                self._take_password(new_client.password)
                self._publish_info()
                log.info("config reloaded from %s; applied live", self._config_path)

    def _take_password(self, password: str) -> None:
        # The password file's path is the same, its content may not be (a rotation).
        if self._client is not None and password != self._password:
            self._password = password
            self._client.set_password(password)
            log.info("MQTT credentials changed (mqtt.password_file); the next connect uses them")

    # -- health --------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        health: dict[str, Any] = {
            "state": "online" if self._serves() else "offline",
            "uptime_s": round(time.monotonic() - self._started),
            "config": self._reload.as_dict(),
        }
        modems = self._modem_health()
        if len(modems) == 1:
            health["modem"] = modems[0]
        health["modems"] = modems
        if self._router is not None:
            health["coap"] = self._router.stats().as_dict()
        if self._front is not None:
            health["coap"] = {**health.get("coap", {}), "waiting": self._front.waiting}
        if self._client is not None and self._client.subscription_error is not None:
            health["problem"] = self._client.subscription_error
        return health

    def _metrics_health(self) -> dict[str, Any]:
        """What a scrape reads: the published health object, offline between stacks."""
        if self._front is not None:
            return self._front.health_snapshot()
        return {**self.health(), "state": "offline"}

    def _modem_health(self) -> list[dict[str, Any]]:
        """One record per configured modem: its driver's health while it runs, else
        what keeps it from running."""
        lanes = {lane.name: lane for lane in self._router.lanes} if self._router else {}
        problems = self._lanes.problems if self._lanes is not None else {}
        records: list[dict[str, Any]] = []
        for modem in self.settings.modems:
            ended = self._ended_modems.get(modem.name, ModemCounters())
            lane = lanes.get(modem.name)
            if lane is None:
                state = problems.get(modem.name, "starting")
                record: dict[str, Any] = {"port": modem.port, "model": "", "state": state}
                record |= {"ready": False, "registered": False, "resets": ended.resets}
                record |= {"instances_open": 0, "in_flight": 0, "line_backlog": 0}
            else:
                record = lane.driver.health().after(ended).as_dict()
                stats = lane.coap.stats()
                record |= {"instances_open": stats.instances_open, "in_flight": stats.in_flight}
                record["line_backlog"] = lane.driver.line_backlog
            records.append({"name": modem.name, "driver": modem.model, **record})
        return records

    def _publish_info(self) -> None:
        if self._front is not None:
            self._front.set_info(info_object(self.settings, self._modem_health()))

    def _serves(self) -> bool:
        refused = self._client is not None and self._client.subscription_error is not None
        return self._serving and not refused and not self._stop.is_set()

    def _subscription_changed(self, problem: str | None) -> None:
        settings = self.settings
        if problem is not None:
            sdnotify.status(f"not serving: {problem}; retrying with backoff")
        elif self._serving:
            sdnotify.status(_serving_status(settings))
        self._health_changed()

    def _publish_unsolicited(self, message: Any) -> None:
        remote = str(getattr(message.remote, "hostinfo", message.remote))
        log.info("unsolicited %s from %s published", message.code, remote)
        if self._front is not None:
            self._front.publish_unsolicited(unsolicited_to_json(message, remote))

    def _health_changed(self, *_args: object) -> None:
        if self._front is not None:
            self._front.health_changed()

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        try:
            async with asyncio.TaskGroup() as group:
                watchdog = group.create_task(sdnotify.watchdog_loop(self._healthy), name="watchdog")
                # Ready means running: the modem and the broker may take any time to come
                # up and are waited for with backoff (STATUS= says which), so they must not
                # run into TimeoutStartSec. Whether requests are served is in status/health.
                sdnotify.ready()
                try:
                    while not self._stop.is_set():
                        self._restart.clear()
                        await self._run_stack()
                finally:
                    watchdog.cancel()
        except BaseExceptionGroup as errors:
            # The watchdog does not fail, so this is the stack's own error: raise it as
            # it is, for the CLI to report.
            if len(errors.exceptions) == 1:
                raise errors.exceptions[0] from None
            raise
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)

    def _healthy(self) -> bool:
        # The pings run on the event loop: a blocked loop stops them by itself. Beyond
        # that, a daemon whose stack has ended but which did not exit is not healthy.
        return not self._stop.is_set() or self._front is not None

    async def _run_stack(self) -> None:
        settings = self.settings
        async with AsyncExitStack() as stack:
            sdnotify.status(f"bringing up {_modem_list(settings)}")
            router = ModemRouter([modem.name for modem in settings.modems])
            oscore = stack.enter_context(SecurityContexts.load(settings.coap.oscore_context_dirs()))
            lanes = Lanes(
                router,
                oscore,
                LaneHooks(
                    not_usable=self._modem_not_usable,
                    up=self._modem_up,
                    ended=self._modem_ended,
                    ready_again=self._modem_ready_again,
                ),
                max_in_flight=settings.coap.max_in_flight,
                trace_at=self._trace_at,
            )
            self._router, self._lanes = router, lanes
            stack.callback(self._forget_layers)
            modems = await stack.enter_async_context(asyncio.TaskGroup())
            tasks = [
                modems.create_task(lanes.run(modem), name=f"modem {modem.name}")
                for modem in settings.modems
            ]
            stack.callback(lambda: [task.cancel() for task in tasks])
            # The broker is not connected to before a modem can carry requests.
            if not await self._wait_either(router.wait_any()):
                return
            mqtt_settings = client_settings(settings)
            client = await stack.enter_async_context(MqttClient(mqtt_settings))
            sdnotify.status(f"connecting to MQTT broker {client.broker}")
            self._client, self._password = client, mqtt_settings.password
            client.add_subscription_listener(self._subscription_changed)
            self._handler = CoapRequests(settings, router)
            front = await stack.enter_async_context(
                RequestFront(
                    client,
                    self._handler,
                    front_settings(settings),
                    health=self.health,
                    on_answer=self._metrics.answered,
                )
            )
            # Counters describe the process, not one incarnation of the layers.
            if self._counters is None:
                self._counters = front.counters
            else:
                front.counters = self._counters
            self._front = front
            router.set_unmatched_handler(self._publish_unsolicited)
            group = await stack.enter_async_context(asyncio.TaskGroup())
            stack.callback(
                group.create_task(self._pool_follows_modems(router, front), name="pool").cancel
            )
            stack.callback(self._forget_front)
            stack.callback(sdnotify.stopping)
            if settings.metrics.listen:
                await stack.enter_async_context(
                    MetricsServer(self._metrics, settings.metrics.listen)
                )
            self._publish_info()  # and on every connect
            if not await self._wait_either(client.wait_connected()):
                return
            self._serving = True
            front.health_changed()
            sdnotify.status(_serving_status(settings))
            log.info(
                "bridge ready: %s, broker %s, base topic %s",
                _modem_list(settings),
                client.broker,
                settings.mqtt.base_topic,
            )
            await self._wait_either(asyncio.Event().wait())
            if self._stop.is_set():
                log.info(
                    "stopping: answering in-flight requests (grace %.0f s)",
                    settings.shutdown_grace,
                )

    def _modem_not_usable(self, modem: ModemSettings, problem: BridgeError, delay: float) -> None:
        log.warning("modem %s not usable: %s; retrying in %.1f s", modem.name, problem, delay)
        if self._router is None or not self._router.lanes:
            sdnotify.status(f"waiting for the modem: {problem}")
        self._health_changed()

    def _modem_up(self, lane: Lane) -> None:
        health = lane.driver.health()
        log.info(
            "modem %s up on %s: %s %s, IMEI %s, IP %s, signal %s dBm",
            lane.name,
            lane.driver.port,
            health.model,
            health.firmware,
            health.imei,
            health.ip,
            health.rssi_dbm,
        )
        lane.driver.add_reset_listener(self._health_changed)
        self._publish_info()
        self._health_changed()

    def _modem_ready_again(self, lane: Lane) -> None:
        log.info("modem %s is ready again", lane.name)
        self._health_changed()

    def _modem_ended(self, driver: ModemDriver) -> None:
        # Counters describe the process, not one incarnation of the layers.
        earlier = self._ended_modems.get(driver.name, ModemCounters())
        self._ended_modems[driver.name] = earlier.plus(driver.health())

    def _forget_front(self) -> None:
        self._serving = False
        self._client = None
        self._front = self._handler = None

    def _forget_layers(self) -> None:
        self._forget_front()
        self._router = self._lanes = None

    @staticmethod
    async def _pool_follows_modems(router: ModemRouter, front: RequestFront[Any]) -> None:
        """Membership of the fleet pool follows the modems: in while one is ready."""
        while True:
            await router.wait_any_ready()
            front.set_pool_wanted(True)
            await router.wait_none_ready()
            front.set_pool_wanted(False)
            front.health_changed()

    async def _wait_either(self, awaitable: Awaitable[object]) -> bool:
        """Await `awaitable` unless a stop or restart comes first; True if it finished."""
        finished = False

        async def work() -> None:
            nonlocal finished
            await awaitable
            finished = True

        async with asyncio.TaskGroup() as group:
            tasks = {
                group.create_task(work()),
                group.create_task(self._stop.wait()),
                group.create_task(self._restart.wait()),
            }
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
        return finished


def _modem_list(settings: Settings) -> str:
    if len(settings.modems) == 1:
        return f"modem {settings.modems[0].port}"
    return "modems " + ", ".join(f"{modem.name} ({modem.port})" for modem in settings.modems)


def _serving_status(settings: Settings) -> str:
    return f"serving {settings.mqtt.base_topic}/request via {_modem_list(settings)}"


def run_daemon(
    config_path: str,
    *,
    log_format: str | None,
    log_level: str | None,
    trace_at: str | None = None,
) -> int:
    """`mqtt-coap-bridge run`: returns the process exit status."""
    settings = load_config(config_path)
    configure_logging(
        log_level or settings.logging.level,
        "json" if (log_format or settings.logging.format) == "json" else "text",
    )
    daemon = Daemon(
        config_path,
        settings,
        logging_override=log_format is not None or log_level is not None,
        trace_at=trace_at,
    )
    log.info("starting mqtt-coap-bridge with %s", config_path)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(daemon.run())
    except BridgeError as exc:
        log.error("stopped on an error: %s", exc)
        return 1
    except Exception:
        # Through the log, so that in JSON mode the traceback is one JSON line too.
        log.critical("stopped on an unexpected error", exc_info=True)
        return 1
    log.info("stopped")
    return 0
