import pytest

from raybench.errors import RaybenchError, UnknownNameError
from raybench.registry import Registry, import_target


def test_register_get_and_names():
    reg = Registry("widget")
    reg.register("alpha", 1)
    reg.register("beta", 2)
    assert reg.get("alpha") == 1
    assert reg.names() == ["alpha", "beta"]
    assert "beta" in reg and "gamma" not in reg
    assert len(reg) == 2


def test_duplicate_name_raises():
    reg = Registry("widget")
    reg.register("alpha", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("alpha", 2)


def test_unknown_name_suggests_close_matches():
    reg = Registry("dataset adapter")
    for name in ("market1501", "msmt17", "dukemtmcreid"):
        reg.register(name, name)
    with pytest.raises(UnknownNameError) as info:
        reg.get("market1051")
    message = str(info.value)
    assert "unknown dataset adapter 'market1051'" in message
    assert "Did you mean 'market1501'" in message
    assert isinstance(info.value, RaybenchError)


def test_lazy_entry_is_imported_on_first_use():
    reg = Registry("function")
    reg.register("join", "os.path:join")
    assert reg._entries["join"] == "os.path:join"
    import os.path

    assert reg.get("join") is os.path.join
    assert reg._entries["join"] is os.path.join


def test_import_target_rejects_malformed():
    with pytest.raises(ValueError):
        import_target("os.path.join")


def test_unregister():
    reg = Registry("widget")
    reg.register("a", 1)
    reg.unregister("a")
    assert "a" not in reg
    with pytest.raises(UnknownNameError):
        reg.unregister("a")
