"""The e2e collector holds every message of the bridge to docs/asyncapi.yaml."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.contract import ContractViolation
from tests.fixtures.daemon import BridgeStack, BridgeStackFactory

pytestmark = pytest.mark.timeout(60)


def test_a_message_off_the_contract_fails_the_test(bridge_stack: BridgeStackFactory) -> None:
    stack: BridgeStack = bridge_stack()
    reader = stack.client()
    reader.subscribe(f"{stack.base}/#")  # everything: requests, answers, status, health
    answer = reader.request({"id": "c1", "uri": "coap://lab/hello"})
    assert answer["ok"]

    # Someone else (not the bridge) publishes something the document does not allow.
    reader.publish_raw(json.dumps({"id": "c2", "ok": "maybe"}), topic=f"{stack.base}/response/c2")
    with pytest.raises(ContractViolation, match="fits no message of channel response"):
        reader.take(lambda message: message.topic.endswith("/c2"))
    reader.violations.clear()  # seen: the teardown check would fail the test otherwise

    reader.publish_raw(b"{}", topic=f"{stack.base}/nowhere")
    with pytest.raises(ContractViolation, match="is no channel"):
        reader.take(lambda message: message.topic.endswith("/nowhere"))
    reader.violations.clear()
