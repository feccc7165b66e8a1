"""ServiceSettings: environment variables with the DISTILIR_ prefix, validation with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from distilir_index.service.settings import ServiceSettings
from pydantic import ValidationError


def test_environment_variables_are_read(monkeypatch):
    monkeypatch.setenv("DISTILIR_INDEXES", '{"a": "/srv/a", "b": "/srv/b"}')
    monkeypatch.setenv("DISTILIR_API_KEY", "s3cret")
    monkeypatch.setenv("DISTILIR_MAX_K", "25")
    monkeypatch.setenv("DISTILIR_CORS", '["http://localhost:3000"]')
    s = ServiceSettings()
    assert s.indexes == {"a": Path("/srv/a"), "b": Path("/srv/b")}
    assert list(s.indexes) == ["a", "b"]  # order kept: the first is the default index
    assert s.api_key is not None and s.api_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)  # a secret is not printed
    assert s.max_k == 25 and s.cors == ["http://localhost:3000"]


def test_keyword_arguments_win_and_unknown_ones_are_refused(monkeypatch):
    monkeypatch.setenv("DISTILIR_MAX_K", "25")
    assert ServiceSettings(max_k=7).max_k == 7
    with pytest.raises(ValidationError, match="max_kk"):
        ServiceSettings(max_kk=7)


def test_empty_api_key_means_no_key(monkeypatch):
    monkeypatch.setenv("DISTILIR_API_KEY", "")
    assert ServiceSettings().api_key is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_k": 0}, "max_k"),
        ({"max_body_bytes": 10}, "max_body_bytes"),
        ({"torch_threads": 0}, "torch_threads"),
        ({"indexes": {"a/b": "/x"}}, "without '/'"),
        ({"indexes": {"a": "/x"}, "index_models": {"b": "m"}}, "not configured"),
    ],
)
def test_bad_values_are_refused_with_the_field_named(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        ServiceSettings(**kwargs)
