"""Typed readers of environment variables used by the settings module."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from lightsource.env import env_bool, env_float, env_int, env_list, env_str

NAME = "LIGHTSOURCE_TEST_SETTING"


@pytest.fixture(autouse=True)
def unset(monkeypatch):
    monkeypatch.delenv(NAME, raising=False)


def test_env_str_default_when_unset():
    assert env_str(NAME, "fallback") == "fallback"


def test_env_str_reads_value(monkeypatch):
    monkeypatch.setenv(NAME, "value")

    assert env_str(NAME, "fallback") == "value"


@pytest.mark.parametrize("default", [True, False])
def test_env_bool_default_when_unset(default):
    assert env_bool(NAME, default) is default


@pytest.mark.parametrize("raw", ["1", "true", "Yes", " on "])
def test_env_bool_reads_true(monkeypatch, raw):
    monkeypatch.setenv(NAME, raw)

    assert env_bool(NAME, False) is True


@pytest.mark.parametrize("raw", ["0", "false", "No", "off", ""])
def test_env_bool_reads_false(monkeypatch, raw):
    monkeypatch.setenv(NAME, raw)

    assert env_bool(NAME, True) is False


def test_env_bool_rejects_maybe(monkeypatch):
    monkeypatch.setenv(NAME, "maybe")

    with pytest.raises(ImproperlyConfigured, match=NAME):
        env_bool(NAME, False)


def test_env_int_default_when_unset():
    assert env_int(NAME, 60, minimum=1) == 60


def test_env_int_default_when_empty(monkeypatch):
    monkeypatch.setenv(NAME, " ")

    assert env_int(NAME, 60, minimum=1) == 60


def test_env_int_reads_value(monkeypatch):
    monkeypatch.setenv(NAME, "120")

    assert env_int(NAME, 60, minimum=1) == 120


def test_env_int_accepts_minimum(monkeypatch):
    monkeypatch.setenv(NAME, "1")

    assert env_int(NAME, 60, minimum=1) == 1


@pytest.mark.parametrize("raw", ["abc", "1.5", "12 seconds"])
def test_env_int_rejects_non_integer(monkeypatch, raw):
    monkeypatch.setenv(NAME, raw)

    with pytest.raises(ImproperlyConfigured, match=NAME):
        env_int(NAME, 60)


def test_env_int_rejects_below_minimum(monkeypatch):
    monkeypatch.setenv(NAME, "0")

    with pytest.raises(ImproperlyConfigured, match="minimum 1"):
        env_int(NAME, 60, minimum=1)


def test_env_float_default_when_unset():
    assert env_float(NAME, 1.5) == 1.5


def test_env_float_reads_value(monkeypatch):
    monkeypatch.setenv(NAME, "0.25")

    assert env_float(NAME, 1.5) == 0.25


@pytest.mark.parametrize("raw", ["fast", "nan", "inf", "-Infinity"])
def test_env_float_rejects_non_number(monkeypatch, raw):
    monkeypatch.setenv(NAME, raw)

    with pytest.raises(ImproperlyConfigured, match=NAME):
        env_float(NAME, 1.5)


def test_env_list_default_when_unset():
    assert env_list(NAME, ["localhost"]) == ["localhost"]


def test_env_list_splits_commas(monkeypatch):
    monkeypatch.setenv(NAME, " a.example , b.example,, ")

    assert env_list(NAME, ["localhost"]) == ["a.example", "b.example"]
