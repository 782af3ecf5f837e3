import pytest

from edgeopt.registry import Registry, UnknownNameError


def test_unknown_name_lists_known_names():
    reg = Registry("widget")
    reg.register("b")(1)
    reg.register("a")(2)
    assert reg.get("a") == 2 and reg.names() == ["a", "b"]
    with pytest.raises(UnknownNameError) as err:
        reg.get("c")
    assert str(err.value) == "unknown widget 'c'; known widgets: a, b"
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)


def test_duplicate_registration_is_an_error():
    reg = Registry("widget")
    reg.register("a")(1)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(2)
