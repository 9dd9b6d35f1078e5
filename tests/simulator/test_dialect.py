"""The L610 dialect, sans-IO: every form, every malformed case."""

from __future__ import annotations

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from bridge.simulator.dialect import (
    IMEI,
    PDP_ADDRESS,
    CloseInstance,
    L610Dialect,
    OpenInstance,
    Output,
    SendDatagram,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def text_lines(outputs: list[Output]) -> list[str]:
    """The framed lines of a reply (echo and effects left out)."""
    data = b"".join(item for item in outputs if isinstance(item, bytes))
    return [line for line in data.decode().split("\r\n") if line]


def effects(outputs: list[Output]) -> list[object]:
    return [item for item in outputs if not isinstance(item, bytes)]


def ask(dialect: L610Dialect, command: str) -> list[str]:
    return text_lines(dialect.handle(command.encode()))


def quiet(**options: object) -> L610Dialect:
    dialect = L610Dialect(**options)  # type: ignore[arg-type]
    assert ask(dialect, "ATE0") == ["ATE0\r", "OK"]
    return dialect


def online(**options: object) -> L610Dialect:
    dialect = quiet(**options)
    assert ask(dialect, "AT+MIPCALL=1") == ["OK", f"+MIPCALL: {PDP_ADDRESS}"]
    return dialect


def open_instance(dialect: L610Dialect, host: str = "127.0.0.1", port: int = 5683) -> int:
    outputs = dialect.handle(f'AT+GTCOAPOPEN="{host}",{port}'.encode())
    assert text_lines(outputs) == []
    (request,) = effects(outputs)
    assert isinstance(request, OpenInstance)
    assert (request.host, request.port) == (host, port)
    reply = dialect.finish_open(request.coap_id, ok=True)
    assert text_lines([reply]) == [f"+GTCOAPOPEN: {request.coap_id}", "OK"]
    return request.coap_id


# -- echo, prefix, basic commands ------------------------------------------------------


def test_echo_is_on_until_ate0_and_back_with_ate1() -> None:
    dialect = L610Dialect()
    assert dialect.handle(b"AT") == [b"AT\r", b"\r\nOK\r\n"]
    assert dialect.handle(b"at+cgmm") == [b"at+cgmm\r", b"\r\nL610\r\n\r\nOK\r\n"]
    assert dialect.handle(b"ATE0") == [b"ATE0\r", b"\r\nOK\r\n"]
    assert dialect.handle(b"AT") == [b"\r\nOK\r\n"]
    assert dialect.handle(b"ATE1") == [b"\r\nOK\r\n"]
    assert dialect.handle(b"AT") == [b"AT\r", b"\r\nOK\r\n"]
    assert dialect.handle(b"ATE") == [b"ATE\r", b"\r\nOK\r\n"]
    assert dialect.handle(b"AT") == [b"\r\nOK\r\n"]


@pytest.mark.parametrize("command", ["AT", "at", "At", "aT"])
def test_prefix_is_case_insensitive(command: str) -> None:
    assert ask(quiet(), command) == ["OK"]


@pytest.mark.parametrize(
    ("command", "info"),
    [
        ("AT+CGMI", ["Fibocom Wireless Inc."]),
        ("AT+CGMM", ["L610"]),
        ("at+cgmm", ["L610"]),
        ("AT+CGMR", ["16000.1000.00.96.20.04"]),
        ("AT+CGSN", [IMEI]),
        ("AT+CIMI", ["460001234567890"]),
        (
            "ATI",
            [
                "Manufacturer: Fibocom Wireless Inc.",
                "Model: L610",
                "Revision: 16000.1000.00.96.20.04",
                f"IMEI: {IMEI}",
            ],
        ),
        ("ATI0", ["Manufacturer: Fibocom Wireless Inc.", "Model: L610"]),
        ("AT+CSQ", ["+CSQ: 24,99"]),
        ("AT+CSQ=?", ["+CSQ: (0-31,99),(0-7,99)"]),
        ("AT+CMEE?", ["+CMEE: 0"]),
        ("AT+CMEE=?", ["+CMEE: (0-2)"]),
        ("AT+CPIN?", ["+CPIN: READY"]),
        ("AT+CPIN=?", []),
        ("AT+CGMI=?", []),
        ("AT+CEREG?", ["+CEREG: 0,1"]),
        ("AT+CGREG?", ["+CGREG: 0,1"]),
        ("AT+CEREG=?", ["+CEREG: (0-2)"]),
        ("AT+MIPCALL?", ["+MIPCALL: 0"]),
        ("AT+MIPCALL=?", ["+MIPCALL: (0-1)"]),
        ("AT+MIPPROFILE?", ['+MIPPROFILE: 1,""']),
    ],
)
def test_information_commands(command: str, info: list[str]) -> None:
    lines = ask(quiet(), command)
    assert lines[: len(info)] == info
    assert lines[-1] == "OK"
    if command != "ATI0":
        assert len(lines) == len(info) + 1


def test_imei_is_15_digits_with_a_valid_luhn_check_digit() -> None:
    assert len(IMEI) == 15
    assert IMEI.isdigit()
    total = 0
    for position, char in enumerate(reversed(IMEI)):
        digit = int(char) * (2 if position % 2 else 1)
        total += digit - 9 if digit > 9 else digit
    assert total % 10 == 0


@pytest.mark.parametrize(
    "line",
    [
        b"XYZ",
        b"A",
        b"AT+FOO",
        b"AT+CGMMX",
        b"ATE2",
        b"ATE0?",
        b"ATI5",
        b"AT?",
        b"AT ",
        b" AT",
        b"AT+CGMM?",
        b"AT+CSQ?",
        b"AT+CMEE",
        b"AT+CMEE=3",
        b"AT+CMEE=01",
        b"AT+CMEE=",
        b"AT+CEREG=3",
        b"AT+CEREG",
        b"AT+CPIN",
        b"AT+CPIN=",
        b"AT\xff",
        b"ATE0;+CMEE=2",
        b"AT+MIPCALL=2",
        b"AT+MIPCALL=1,apn",
        b'AT+MIPCALL=1,"apn","user"',
        b'AT+MIPCALL=1,"apn","u","p",1',
        b"AT+MIPCALL",
        b'AT+MIPPROFILE=2,"apn"',
        b"AT+MIPPROFILE=1,apn",
    ],
)
def test_malformed_or_unknown_commands_answer_error(line: bytes) -> None:
    dialect = quiet(sim_inserted=True)
    dialect.cmee = 2  # syntax errors stay plain ERROR whatever the CMEE mode
    assert text_lines(dialect.handle(line)) == ["ERROR"]


def test_line_too_long_answers_error() -> None:
    assert text_lines([quiet().line_too_long()]) == ["ERROR"]


# -- CMEE and SIM errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "final"),
    [(0, "ERROR"), (1, "+CME ERROR: 10"), (2, "+CME ERROR: SIM not inserted")],
)
def test_sim_errors_follow_cmee_mode(mode: int, final: str) -> None:
    dialect = quiet(sim_inserted=False)
    assert ask(dialect, f"AT+CMEE={mode}") == ["OK"]
    assert ask(dialect, "AT+CMEE?") == [f"+CMEE: {mode}", "OK"]
    assert ask(dialect, "AT+CPIN?") == [final]
    assert ask(dialect, "AT+CIMI") == [final]
    assert ask(dialect, "AT+MIPCALL=1") == [final]
    # The CoAP chapter only knows plain ERROR.
    assert ask(dialect, 'AT+GTCOAPOPEN="127.0.0.1",5683') == ["ERROR"]
    assert ask(dialect, "AT+GTCOAPOPEN?") == ["ERROR"]
    assert ask(dialect, "AT+CEREG?") == ["+CEREG: 0,0", "OK"]


@pytest.mark.parametrize(
    ("mode", "final"),
    [(0, "ERROR"), (1, "+CME ERROR: 3"), (2, "+CME ERROR: operation not allowed")],
)
def test_entering_a_pin_when_ready_is_not_allowed(mode: int, final: str) -> None:
    dialect = quiet()
    ask(dialect, f"AT+CMEE={mode}")
    assert ask(dialect, 'AT+CPIN="1234"') == [final]


def test_registration_waits_for_register_after() -> None:
    clock = FakeClock()
    dialect = quiet(register_after=5.0, clock=clock)
    ask(dialect, "AT+CMEE=2")
    assert ask(dialect, "AT+CEREG?") == ["+CEREG: 0,2", "OK"]
    assert ask(dialect, "AT+CGREG?") == ["+CGREG: 0,2", "OK"]
    assert ask(dialect, "AT+MIPCALL=1") == ["+CME ERROR: no network service"]
    clock.now += 5.0
    assert ask(dialect, "AT+CEREG?") == ["+CEREG: 0,1", "OK"]
    assert ask(dialect, "AT+CEREG=2") == ["OK"]
    assert ask(dialect, "AT+CEREG?") == ['+CEREG: 2,1,"1A2B","01A2B3C4",7', "OK"]
    assert ask(dialect, "AT+CGREG?") == ["+CGREG: 0,1", "OK"]
    # A reboot restarts the network search.
    dialect.reboot()
    assert ask(dialect, "AT+CEREG?") == ["AT+CEREG?\r", "+CEREG: 0,2", "OK"]


# -- PDP context -----------------------------------------------------------------------


def test_mipcall_activation_and_release() -> None:
    dialect = quiet()
    ask(dialect, "AT+CMEE=1")
    assert ask(dialect, "AT+MIPCALL?") == ["+MIPCALL: 0", "OK"]
    assert ask(dialect, "AT+MIPCALL=0") == ["+CME ERROR: 3"]
    assert ask(dialect, 'AT+MIPCALL=1,"internet"') == ["OK", f"+MIPCALL: {PDP_ADDRESS}"]
    assert ask(dialect, "AT+MIPCALL?") == [f'+MIPCALL: 1,"{PDP_ADDRESS}"', "OK"]
    assert ask(dialect, "AT+MIPCALL=1") == ["+CME ERROR: 3"]
    assert ask(dialect, "AT+MIPCALL=0") == ["OK"]
    assert ask(dialect, 'AT+MIPCALL=1,"apn","user","secret"') == ["OK", f"+MIPCALL: {PDP_ADDRESS}"]
    assert dialect.apn == "apn"


def test_mipprofile_sets_the_apn() -> None:
    dialect = quiet()
    assert ask(dialect, 'AT+MIPPROFILE=1,"iot.example"') == ["OK"]
    assert ask(dialect, "AT+MIPPROFILE?") == ['+MIPPROFILE: 1,"iot.example"', "OK"]


def test_releasing_the_context_drops_every_instance() -> None:
    dialect = online()
    first, second = open_instance(dialect), open_instance(dialect)
    outputs = dialect.handle(b"AT+MIPCALL=0")
    assert effects(outputs) == [CloseInstance(first), CloseInstance(second)]
    assert text_lines(outputs) == ["OK"]
    assert ask(dialect, 'AT+GTCOAPOPEN="127.0.0.1",5683') == ["ERROR"]
    assert ask(dialect, f'AT+GTCOAPSEND={first},1,"00"') == ["ERROR"]


# -- GTCOAPOPEN ------------------------------------------------------------------------


def test_open_hands_out_the_lowest_free_id_and_reuses_closed_ids() -> None:
    dialect = online()
    assert [open_instance(dialect) for _ in range(3)] == [1, 2, 3]
    assert ask(dialect, "AT+GTCOAPCLOSE=2") == ["OK", "+GTCOAPCLOSE: 1"]
    assert open_instance(dialect) == 2
    assert open_instance(dialect) == 4
    assert ask(dialect, 'AT+GTCOAPOPEN="127.0.0.1",5683') == ["ERROR"]


def test_open_query_lists_free_ids_or_zero() -> None:
    dialect = online(instances=3)
    assert ask(dialect, "AT+GTCOAPOPEN?") == [
        "+GTCOAPOPEN: 1",
        "+GTCOAPOPEN: 2",
        "+GTCOAPOPEN: 3",
        "OK",
    ]
    open_instance(dialect)
    # An open in progress holds its id too.
    dialect.handle(b'AT+GTCOAPOPEN="127.0.0.1",1')
    assert dialect.opening_id == 2
    assert ask(dialect, "AT+GTCOAPOPEN?") == ["+GTCOAPOPEN: 3", "OK"]
    dialect.finish_open(2, ok=True)
    open_instance(dialect)
    assert ask(dialect, "AT+GTCOAPOPEN?") == ["+GTCOAPOPEN: 0", "OK"]
    assert ask(dialect, "AT+GTCOAPCLOSE=1") == ["OK", "+GTCOAPCLOSE: 1"]
    assert ask(dialect, "AT+GTCOAPOPEN?") == ["+GTCOAPOPEN: 1", "OK"]


def test_open_that_cannot_connect_answers_error_and_frees_the_id() -> None:
    dialect = online()
    dialect.handle(b'AT+GTCOAPOPEN="unknown.invalid",5683')
    assert text_lines([dialect.finish_open(1, ok=False)]) == ["ERROR"]
    assert open_instance(dialect) == 1


@pytest.mark.parametrize(
    "host",
    ["localhost", "coap.example.org", "1.2.3.4", "255.255.255.255", "0.0.0.0", "x" * 255],
)
def test_open_accepts_valid_hosts(host: str) -> None:
    assert open_instance(online(), host=host, port=65535) == 1


@pytest.mark.parametrize(
    "suffix",
    [
        "=127.0.0.1,5683",  # unquoted host
        '="127.0.0.1",0',
        '="127.0.0.1",65536',
        '="127.0.0.1",-1',
        '="127.0.0.1",',
        '="127.0.0.1"',
        '="127.0.0.1",5683,1',
        '="127.0.0.1","5683"',
        '="127.0.0.1", 5683',
        '= "127.0.0.1",5683',
        '="",5683',
        f'="{"x" * 256}",5683',
        '="256.1.1.1",5683',
        '="1.2.3",5683',
        '="1.2.3.4.5",5683',
        '="1..2.3",5683',
        '="1234.1.1.1",5683',
        '="127.0.0.1,5683',
        '=127.0.0.1",5683',
        "=?",
        "",
        "=",
    ],
)
def test_open_rejects_malformed_forms(suffix: str) -> None:
    dialect = online()
    outputs = dialect.handle(f"AT+GTCOAPOPEN{suffix}".encode())
    assert text_lines(outputs) == ["ERROR"]
    assert effects(outputs) == []
    assert dialect.opening_id is None


def test_open_needs_an_active_pdp_context() -> None:
    dialect = quiet()
    assert ask(dialect, 'AT+GTCOAPOPEN="127.0.0.1",5683') == ["ERROR"]
    assert ask(dialect, "AT+GTCOAPOPEN?")[-1] == "OK"


# -- GTCOAPSEND ------------------------------------------------------------------------


def test_send_hands_the_datagram_over() -> None:
    dialect = online()
    coap_id = open_instance(dialect)
    outputs = dialect.handle(f'AT+GTCOAPSEND={coap_id},4,"4001ABcd"'.encode())
    assert effects(outputs) == [SendDatagram(coap_id, bytes.fromhex("4001abcd"))]
    assert text_lines(outputs) == ["OK"]


def test_send_size_limit_is_exactly_512_bytes() -> None:
    dialect = online()
    coap_id = open_instance(dialect)
    assert ask(dialect, f'AT+GTCOAPSEND={coap_id},512,"{"AB" * 512}"') == ["OK"]
    assert ask(dialect, f'AT+GTCOAPSEND={coap_id},513,"{"AB" * 513}"') == ["ERROR"]


@pytest.mark.parametrize(
    "suffix",
    [
        '=1,4,"4001ABC"',  # odd hex
        '=1,4,"4001ABCDEF"',  # too long for len
        '=1,4,"4001AB"',  # too short for len
        '=1,4,"4001ABCG"',  # not hex
        '=1,4,"4001 ABC"',
        "=1,4,4001ABCD",  # unquoted
        '=1,4,"4001ABCD',
        '=1,0,""',
        '=2,4,"4001ABCD"',  # never opened
        '=0,4,"4001ABCD"',
        '=9,4,"4001ABCD"',
        '=1,-4,"4001ABCD"',
        '=1,"4","4001ABCD"',
        '=1,4,"4001ABCD",1',
        '=1, 4,"4001ABCD"',
        "=1,4",
        "=1",
        "?",
        "=?",
        "",
    ],
)
def test_send_rejects_malformed_forms(suffix: str) -> None:
    dialect = online()
    open_instance(dialect)
    outputs = dialect.handle(f"AT+GTCOAPSEND{suffix}".encode())
    assert text_lines(outputs) == ["ERROR"]
    assert effects(outputs) == []


def test_send_on_a_closed_instance_is_an_error() -> None:
    dialect = online()
    coap_id = open_instance(dialect)
    ask(dialect, f"AT+GTCOAPCLOSE={coap_id}")
    assert ask(dialect, f'AT+GTCOAPSEND={coap_id},1,"00"') == ["ERROR"]


# -- GTCOAPCLOSE -----------------------------------------------------------------------


def test_close_answers_ok_then_the_confirmation_line() -> None:
    dialect = online()
    coap_id = open_instance(dialect)
    outputs = dialect.handle(f"AT+GTCOAPCLOSE={coap_id}".encode())
    assert outputs == [CloseInstance(coap_id), b"\r\nOK\r\n\r\n+GTCOAPCLOSE: 1\r\n"]


@pytest.mark.parametrize("suffix", ["=1", "=0", "=5", "=", "=?", "?", "", '="1"', "=1,1"])
def test_close_rejects_unknown_ids_and_other_forms(suffix: str) -> None:
    outputs = online().handle(f"AT+GTCOAPCLOSE{suffix}".encode())
    assert text_lines(outputs) == ["ERROR"]
    assert effects(outputs) == []


def test_close_twice_is_an_error() -> None:
    dialect = online()
    coap_id = open_instance(dialect)
    assert ask(dialect, f"AT+GTCOAPCLOSE={coap_id}") == ["OK", "+GTCOAPCLOSE: 1"]
    assert ask(dialect, f"AT+GTCOAPCLOSE={coap_id}") == ["ERROR"]


# -- URCs ------------------------------------------------------------------------------


def test_received_datagrams_become_upper_case_unquoted_urcs() -> None:
    dialect = online()
    coap_id = open_instance(dialect)
    urc = dialect.datagram_received(coap_id, bytes.fromhex("6045abcd"))
    assert urc == b"\r\n+GTCOAPDATA: 1,4,6045ABCD\r\n"
    assert dialect.datagram_received(coap_id, b"\xff" * 512) is not None
    assert dialect.datagram_received(coap_id, b"\xff" * 513) is None
    assert dialect.datagram_received(2, b"\x00") is None
    ask(dialect, f"AT+GTCOAPCLOSE={coap_id}")
    assert dialect.datagram_received(coap_id, b"\x00") is None


# -- faults and reboot -----------------------------------------------------------------


def test_swallow_next_final_drops_only_the_final_result() -> None:
    dialect = online()
    coap_id = open_instance(dialect)
    dialect.swallow_next_final()
    assert ask(dialect, "AT+CSQ") == ["+CSQ: 24,99"]
    assert ask(dialect, "AT") == ["OK"]
    dialect.swallow_next_final()
    assert ask(dialect, f"AT+GTCOAPCLOSE={coap_id}") == ["+GTCOAPCLOSE: 1"]
    dialect.swallow_next_final()
    assert ask(dialect, "AT+FOO") == []
    assert ask(dialect, "AT+FOO") == ["ERROR"]


def test_urc_mid_reply_goes_into_the_next_reply_with_an_info_line() -> None:
    dialect = online()
    dialect.urc_mid_reply("+GTCOAPDATA: 1,1,00")
    assert ask(dialect, "AT") == ["OK"]
    assert ask(dialect, "AT+GTCOAPOPEN?") == [
        "+GTCOAPOPEN: 1",
        "+GTCOAPDATA: 1,1,00",
        "+GTCOAPOPEN: 2",
        "+GTCOAPOPEN: 3",
        "+GTCOAPOPEN: 4",
        "OK",
    ]
    assert ask(dialect, "AT+CSQ") == ["+CSQ: 24,99", "OK"]
    dialect.urc_mid_reply("+CEREG: 1")
    assert ask(dialect, "AT+CSQ") == ["+CSQ: 24,99", "+CEREG: 1", "OK"]


def test_reboot_forgets_everything_volatile() -> None:
    dialect = online()
    ask(dialect, "AT+CMEE=2")
    coap_id = open_instance(dialect)
    dialect.handle(b'AT+GTCOAPOPEN="127.0.0.1",1')
    dialect.swallow_next_final()
    assert dialect.reboot() == b"\r\nRDY\r\n\r\n+CPIN: READY\r\n"
    assert dialect.finish_open(2, ok=True) == b""
    assert dialect.handle(b"AT+CMEE?") == [b"AT+CMEE?\r", b"\r\n+CMEE: 0\r\n\r\nOK\r\n"]
    assert ask(dialect, "AT+MIPCALL?")[-2:] == ["+MIPCALL: 0", "OK"]
    assert ask(dialect, f'AT+GTCOAPSEND={coap_id},1,"00"')[-1] == "ERROR"
    assert dialect.open_ids == set()


def test_boot_lines_without_sim() -> None:
    assert L610Dialect(sim_inserted=False).reboot() == b"\r\nRDY\r\n"


def test_instances_must_be_positive() -> None:
    with pytest.raises(ValueError, match="instances"):
        L610Dialect(instances=0)


FINALS = ("OK", "ERROR", "+CME ERROR: ")


@given(st.binary(max_size=300))
def test_any_line_gets_exactly_one_final_result(line: bytes) -> None:
    dialect = online()
    dialect.cmee = 2
    outputs = dialect.handle(b"AT" + line)
    if any(isinstance(item, OpenInstance) for item in outputs):
        assert isinstance(outputs[-1], OpenInstance)
        outputs = [*outputs, dialect.finish_open(dialect.opening_id or 0, ok=True)]
    lines = text_lines(outputs)  # echo is off: no copy of the line itself
    assert sum(line.startswith(FINALS) for line in lines) == 1


@given(st.text(alphabet='AT+GCOPENSDL=?",0123456789.abcdef', max_size=60))
def test_dialect_never_raises_on_near_miss_commands(command: str) -> None:
    dialect = online()
    outputs = dialect.handle(command.encode())
    assert outputs


# Commands the dialect knows, each with forms that are valid once instance 1 is open
# (docs/l610-coap-at.md), then mutated: the parsers behind the names are reached, not
# only the name lookup. Zero mutations keep the valid form.
VALID_FORMS = {
    "+GTCOAPOPEN": ['="127.0.0.1",5683', '="coap.example",1', "?"],
    "+GTCOAPSEND": ['=1,4,"40011234"', '=1,1,"00"'],
    "+GTCOAPCLOSE": ["=1"],
    "+MIPCALL": ["=1", "=0", "?"],
    "+MIPPROFILE": ['=1,"internet"'],
    "+CMEE": ["=2", "=0", "?"],
    "+CEREG": ["?", "=2"],
    "+CPIN": ["?"],
    "+CSQ": [""],
    "E": ["0", "1"],
    "I": [""],
}
SUFFIX_CHARACTERS = st.sampled_from(list('=?",.:;0123456789abcdefABCDEF \t-+x'))


@st.composite
def mutated_commands(draw: st.DrawFn) -> tuple[str, str]:
    """(name, suffix): a known command with a valid suffix, mutated 0-4 times."""
    name = draw(st.sampled_from(sorted(VALID_FORMS)))
    suffix = list(draw(st.sampled_from(VALID_FORMS[name])))
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        position = draw(st.integers(min_value=0, max_value=len(suffix)))
        operation = draw(st.sampled_from(["insert", "delete", "replace"]))
        if operation == "insert" or not suffix:
            suffix.insert(position, draw(SUFFIX_CHARACTERS))
        elif operation == "delete":
            del suffix[min(position, len(suffix) - 1)]
        else:
            suffix[min(position, len(suffix) - 1)] = draw(SUFFIX_CHARACTERS)
    return name, "".join(suffix)


@settings(max_examples=300)
@given(
    command=mutated_commands(),
    lower=st.booleans(),
    opened=st.integers(0, 2),
    connects=st.booleans(),
)
def test_known_commands_with_mutated_arguments_get_one_final_result(
    command: tuple[str, str], lower: bool, opened: int, connects: bool
) -> None:
    name, suffix = command
    dialect = online()
    dialect.cmee = 2
    for _ in range(opened):
        open_instance(dialect)
    line = ("at" + name.lower() if lower else "AT" + name) + suffix
    outputs = dialect.handle(line.encode())
    if any(isinstance(item, OpenInstance) for item in outputs):
        # A pending open is answered once the socket is connected (or not).
        assert isinstance(outputs[-1], OpenInstance)
        outputs = [*outputs, dialect.finish_open(dialect.opening_id or 0, ok=connects)]
    lines = text_lines(outputs)
    assert sum(text.startswith(FINALS) for text in lines) == 1, (line, lines)
    event(f"{name}: {'OK' if 'OK' in lines else 'refused'}")  # both, for each name
    # Whatever it was, the modem's state stays one a host can work with.
    assert dialect.open_ids <= {1, 2, 3, 4}
    assert dialect.opening_id is None
    for item in effects(outputs):
        if isinstance(item, SendDatagram):
            assert 0 < len(item.data) <= 512  # docs/l610-coap-at.md
            assert item.coap_id in dialect.open_ids
