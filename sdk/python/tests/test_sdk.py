"""The Python SDK, natively: what a stage author sees."""

import json

import pytest

import weir_stage
from weir_stage import Event, Invalid, Retry, kv, log, testing


class Probe:
    """Splits on "split", refuses "bad"/"later", drops "drop", counts."""

    def init(self, config):
        if "fail" in config:
            raise Invalid(config["fail"])
        self.prefix = config.get("prefix", "")
        self.seen = 0

    def process(self, event):
        self.seen += 1
        text = event.text
        if text == "split":
            return [event, event.with_payload("second")]
        if text == "bad":
            raise Invalid("bad event")
        if text == "later":
            raise Retry("try later")
        if text == "drop":
            return None
        if text == "dict":
            return {"not": "an event"}
        if text == "list-of-str":
            return ["a"]
        if text == "boom":
            return {}["missing"]
        return event.with_header("seen", str(self.seen)).with_payload(self.prefix + text)


WitWorld = weir_stage.export(Probe)


@pytest.fixture(autouse=True)
def clean_kv():
    testing.kv_clear()
    yield
    testing.kv_clear()


def test_event_reading_and_copies():
    event = Event("orders.created", '{"id": 7}', headers=[("trace", "a"), ("tag", "x"), ("tag", "y")])
    assert event.payload == b'{"id": 7}'
    assert event.json() == {"id": 7}
    assert event.text == '{"id": 7}'
    assert event.header("tag") == "x"
    assert event.header("Tag") is None
    assert event.header("missing", "default") == "default"
    assert event.header_values("tag") == ["x", "y"]

    changed = event.with_json({"id": 8}).with_subject("orders.checked").with_header("tag", "z")
    assert changed.payload == b'{"id":8}'
    assert changed.subject == "orders.checked"
    assert changed.headers == [("trace", "a"), ("tag", "z")]
    # The original is untouched.
    assert event.subject == "orders.created" and event.header_values("tag") == ["x", "y"]

    assert event.add_header("tag", "w").header_values("tag") == ["x", "y", "w"]
    assert event.without_header("tag").headers == [("trace", "a")]
    assert Event.from_json("a", {"ü": 1}).payload == '{"ü":1}'.encode()
    assert Event("a", "x", {"k": "v"}) == Event("a", b"x", [("k", "v")])


def test_bad_payloads_raise_invalid_with_the_reason():
    with pytest.raises(Invalid, match="^payload is not valid JSON: Expecting value: line 1 column 1"):
        Event("a", "not json").json()
    with pytest.raises(Invalid, match="^payload is not valid UTF-8"):
        Event("a", b"\xff\xfe").text
    with pytest.raises(Invalid, match="^payload is not valid JSON: it is not UTF-8"):
        Event("a", b"\xff").json()
    with pytest.raises(Invalid, match="^cannot write the payload as JSON"):
        Event("a").with_json({"x": {1, 2}})
    with pytest.raises(TypeError, match="use Event.from_json"):
        Event("a", {"x": 1})


def test_outcomes_of_one_batch_in_order():
    out = testing.run(Probe, {"prefix": "p-"}, [Event("s", t) for t in ["split", "bad", "later", "drop", "x"]])
    assert len(out) == 5
    assert [e.payload for e in out[0].events] == [b"split", b"second"]
    assert out[1].invalid == "bad event" and out[1].kind == "invalid" and out[1].events == []
    assert out[2].retry == "try later" and out[2].invalid is None
    assert out[3].dropped
    assert out[4].event.payload == b"p-x"
    assert out[4].event.header("seen") == "5"


def test_state_lives_across_batches():
    stage = testing.start(Probe, {})
    stage.process([Event("s", "a"), Event("s", "b")])
    assert stage.process_one(Event("s", "c")).event.header("seen") == "3"
    assert stage.stage.seen == 3


def test_other_exceptions_name_the_type_message_and_line():
    out = testing.run_one(Probe, {}, Event("s", "boom"))
    assert out.invalid.startswith("KeyError: 'missing' (at test_sdk.py:")
    assert out.invalid.endswith(', in process: return {}["missing"])')


def test_wrong_return_types_say_what_was_expected():
    assert testing.run_one(Probe, {}, Event("s", "dict")).invalid == (
        "process returned dict {'not': 'an event'}; "
        "return None (drop the event), an Event (map), or a list of Events (split)"
    )
    assert testing.run_one(Probe, {}, Event("s", "list-of-str")).invalid.startswith(
        "process returned a list holding str 'a'; a list may hold only Events"
    )


def test_init_refusals():
    assert testing.init_error(Probe, {"fail": "config.x: expected a number"}) == "config.x: expected a number"
    assert testing.init_error(Probe, {}) is None
    assert testing.init_error(Probe, "not json").startswith("config is not valid JSON")

    class Broken:
        def init(self, config):
            self.limit = int(config["limit"])

        def process(self, event):
            return event

    message = testing.init_error(Broken, {"limit": "ten"})
    assert message.startswith("ValueError: invalid literal for int() with base 10: 'ten' (at test_sdk.py:")
    with pytest.raises(testing.InitError, match="init refused the config: KeyError: 'limit'"):
        testing.start(Broken, {})


def test_the_exported_world_is_accepted_by_the_harness():
    assert testing.run_one(WitWorld, {}, Event("s", "x")).event.payload == b"x"


def test_process_batch():
    class Numbered:
        def process_batch(self, events):
            return [e.with_header("part", f"{i}/{len(events)}") for i, e in enumerate(events)]

    out = testing.run(Numbered, None, [Event("a"), Event("a")])
    assert out[1].event.header("part") == "1/2"

    class Short:
        def process_batch(self, events):
            return events[:1]

    out = testing.run(Short, None, [Event("a"), Event("a")])
    assert out[0].invalid == out[1].invalid
    assert out[0].invalid.startswith("process_batch returned 1 results for a batch of 2 events")

    class Mixed:
        def process_batch(self, events):
            if any(e.text == "raise" for e in events):
                raise ValueError("no")
            return [None if e.text == "drop" else Invalid("refused") if e.text == "bad" else e for e in events]

    out = testing.run(Mixed, None, [Event("a", t) for t in ["x", "drop", "bad"]])
    assert [o.kind for o in out] == ["ok", "ok", "invalid"]
    assert out[1].dropped and out[2].invalid == "refused"
    # An exception fails only the event that raises it, as weir's replay does.
    out = testing.run(Mixed, None, [Event("a", t) for t in ["x", "raise"]])
    assert out[0].event.text == "x"
    assert out[1].invalid.startswith("ValueError: no (at test_sdk.py:")


def test_kv_reads():
    testing.kv_put("shops", "eu-1", {"country": "DE"})
    testing.kv_put("raw", "k", b"\x00\x01")
    testing.kv_put("text", "k", "not json")
    assert kv.get_json("shops", "eu-1") == {"country": "DE"}
    assert kv.get_json("shops", "nope") is None
    assert kv.get("raw", "k") == b"\x00\x01"
    with pytest.raises(Invalid, match=r"^kv value text/k is not valid JSON"):
        kv.get_json("text", "k")
    with pytest.raises(Invalid, match='^KV bucket "rates" is not granted to this stage'):
        kv.get("rates", "EUR")


def test_kv_errors_dead_letter_the_event():
    class Lookup:
        def process(self, event):
            return event.with_json(kv.get_json("shops", event.text))

    out = testing.run(Lookup, {}, [Event("s", "eu-1")])
    assert out[0].invalid.startswith('KV bucket "shops" is not granted')
    testing.kv_put("shops", "eu-1", {"country": "DE"})
    assert testing.run_one(Lookup, {}, Event("s", "eu-1")).json() == {"country": "DE"}


def test_logs_and_print_are_collected():
    class Chatty:
        def init(self, config):
            log.info("loaded %d rules", 3)

        def process(self, event):
            print("saw", event.subject)
            log.warn("careful")
            return event

    stage = testing.start(Chatty)
    stage.process_one(Event("orders"))
    assert testing.logs() == [("info", "loaded 3 rules"), ("info", "saw orders"), ("warn", "careful")]
    with pytest.raises(ValueError, match="unknown log level"):
        log.log("loud", "x")


def test_export_needs_a_class():
    with pytest.raises(TypeError, match="takes the stage's class"):
        weir_stage.export(Probe())
    with pytest.raises(TypeError, match="has neither process"):
        weir_stage.export(type("Empty", (), {}))
