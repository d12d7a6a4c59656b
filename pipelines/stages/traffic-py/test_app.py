"""traffic-py's native tests: `pytest` in this directory (no WebAssembly)."""

import json
import pathlib

import pytest

from weir_stage import Event, testing

from app import Traffic

CASES = json.loads((pathlib.Path(__file__).parent.parent / "traffic-cases.json").read_text())
CONFIG = CASES["config"]


def hit(url=None, referrer=None, **fields):
    payload = {"hit_id": "h-1", **fields}
    if url is not None:
        payload["url"] = url
    if referrer is not None:
        payload["referrer"] = referrer
    return Event("tracking.hit", json.dumps(payload), headers=[("trace-id", "t1")])


@pytest.mark.parametrize("url,referrer,expected", CASES["cases"], ids=lambda v: str(v)[:60])
def test_shared_classification_cases(url, referrer, expected):
    out = testing.run_one(Traffic, CONFIG, hit(url, referrer))
    result = out.json()
    assert {k: result[k] for k in ("channel", "source", "medium", "campaign") if k in result} == expected


def test_the_hit_keeps_its_fields_subject_and_headers():
    out = testing.run_one(Traffic, CONFIG, hit("https://shop.example.com/?utm_source=newsletter&utm_medium=email", "", ts="2026-12-05T09:00:00Z"))
    assert out.event.subject == "tracking.hit"
    assert out.event.header("trace-id") == "t1"
    assert out.json() == {
        "hit_id": "h-1",
        "url": "https://shop.example.com/?utm_source=newsletter&utm_medium=email",
        "referrer": "",
        "ts": "2026-12-05T09:00:00Z",
        "channel": "email",
        "source": "newsletter",
        "medium": "email",
    }


def test_utm_fields_of_the_hit_count_when_the_url_has_none():
    out = testing.run_one(Traffic, CONFIG, hit("https://shop.example.com/", None, utm_source="newsletter", utm_medium="email"))
    assert out.json()["channel"] == "email"


def test_into_nests_the_result_and_fields_can_be_renamed():
    config = {"into": "traffic", "url_field": "page", "referrer_field": "ref"}
    out = testing.run_one(Traffic, config, Event("t", json.dumps({"page": "https://a.example/", "ref": "https://t.co/x"})))
    assert out.json()["traffic"] == {"channel": "social", "source": "x", "medium": "social"}


def test_a_batch_gets_one_outcome_per_hit():
    events = [hit("https://shop.example.com/", "https://www.google.com/"), Event("tracking.hit", "not json"), hit(url=42)]
    out = testing.run(Traffic, CONFIG, events)
    assert out[0].json()["channel"] == "search"
    assert out[1].invalid.startswith("payload is not valid JSON: ")
    assert out[2].invalid == 'field "url" must be a string, got int 42'


def test_a_payload_that_is_not_an_object_is_refused():
    out = testing.run_one(Traffic, CONFIG, Event("tracking.hit", '["/", "google"]'))
    assert out.invalid == "payload is a JSON list, not an object: a tracking hit is an object with a url and a referrer"


def test_bad_config_is_refused_with_the_key():
    assert testing.init_error(Traffic, {"internal_hosts": "shop.example.com"}) == (
        "config.internal_hosts: expected a list of host names, like [\"example.com\"], got 'shop.example.com'"
    )
    assert testing.init_error(Traffic, {"internal_host": []}).startswith("config.internal_host: unknown key; the keys are ")
    assert testing.init_error(Traffic, {}) is None


def test_the_sample_hits_all_classify():
    path = pathlib.Path(__file__).parent.parent.parent / "samples" / "traffic.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    events = [Event(l["subject"], l["payload_text"] if "payload_text" in l else json.dumps(l["payload"])) for l in lines]
    out = testing.run(Traffic, CONFIG, events)
    channels = [o.json()["channel"] for o in out if o.ok]
    assert len(channels) == len(lines) - 2 and sum(1 for o in out if o.invalid) == 2
    assert set(channels) == {"search", "paid", "email", "social", "referral", "internal", "direct", "other"}
