"""{{name}}'s native tests: `pytest` in this directory, no WebAssembly."""

from weir_stage import Event, testing

from app import Stage

CONFIG = {"field": "team", "value": "web"}


def test_sets_the_field():
    out = testing.run_one(Stage, CONFIG, Event("{{name}}.in", '{"id": 1}'))
    assert out.json() == {"id": 1, "team": "web"}


def test_refuses_events_that_are_not_objects():
    out = testing.run_one(Stage, CONFIG, Event("{{name}}.in", "[1, 2]"))
    assert out.invalid == "payload is a JSON list, not an object"


def test_refuses_a_config_without_field():
    assert testing.init_error(Stage, {}).startswith("config.field: expected the name of the field")
