"""The generic registry: order kept, duplicates refused, unknown names answered in one line."""

import pytest

from addrop_cli.registry import Registry, UnknownName


def _colours() -> Registry[tuple[str, int]]:
    return Registry("colour", [("red", 1), ("green", 2), ("blue", 3)], key=lambda r: r[0])


def test_lookup_and_order_follow_registration():
    reg = _colours()
    assert reg["green"] == ("green", 2)
    assert reg.names == ("red", "green", "blue")
    assert list(reg) == ["red", "green", "blue"] and len(reg) == 3
    assert "blue" in reg and "pink" not in reg


def test_unknown_name_is_one_line_with_a_suggestion():
    with pytest.raises(UnknownName) as err:
        _colours()["gren"]
    line = str(err.value)
    assert "\n" not in line
    assert "unknown colour 'gren'" in line and "did you mean 'green'" in line
    assert "red, green, blue" in line
    assert isinstance(err.value, KeyError)


def test_a_name_registered_twice_is_refused():
    reg = _colours()
    with pytest.raises(ValueError, match="registered twice"):
        reg.register(("red", 9))
    assert reg["red"] == ("red", 1)
