"""Settings parsing from the environment, validation, and device resolution."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from {{ cookiecutter.package_name }}.serving.device import Device, DeviceUnavailable, resolve_device
from {{ cookiecutter.package_name }}.settings import ENV_PREFIX, Settings


def test_env_prefix_is_the_package_name() -> None:
    assert ENV_PREFIX == "{{ cookiecutter.package_name.upper() }}_"


def test_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
{%- if cookiecutter.workload == 'llm' %}
    monkeypatch.setenv(f"{ENV_PREFIX}MAX_RUNNING_SEQUENCES", "8")
    monkeypatch.setenv(f"{ENV_PREFIX}MAX_TOKENS_PER_STEP", "1024")
{%- else %}
    monkeypatch.setenv(f"{ENV_PREFIX}MAX_BATCH_SIZE", "8")
    monkeypatch.setenv(f"{ENV_PREFIX}MAX_BATCH_WAIT_MS", "5")
{%- endif %}
    monkeypatch.setenv(f"{ENV_PREFIX}DEVICE", "CUDA:1")
    monkeypatch.setenv(f"{ENV_PREFIX}API_KEY", "s3cret")
    monkeypatch.setenv(f"{ENV_PREFIX}LOG_LEVEL", "debug")
    monkeypatch.setenv(f"{ENV_PREFIX}CORS_ORIGINS", '["https://app.example"]')
    settings = Settings(_env_file=None)
{%- if cookiecutter.workload == 'llm' %}
    assert settings.max_running_sequences == 8
    assert settings.max_tokens_per_step == 1024
{%- else %}
    assert settings.max_batch_size == 8
    assert settings.max_batch_wait_s == pytest.approx(0.005)
{%- endif %}
    assert settings.device == "cuda:1"
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    assert settings.log_level == "DEBUG"
    assert settings.cors_origins == ["https://app.example"]


def test_defaults_match_the_generated_options() -> None:
    settings = Settings(_env_file=None)
    assert settings.device == "{{ 'cuda' if cookiecutter.device == 'gpu' else 'cpu' }}"
    assert settings.cpu_fallback is {{ 'False' if cookiecutter.device == 'gpu' else 'True' }}
{%- if cookiecutter.workload == 'llm' %}
    assert settings.max_running_sequences == {{ '32' if cookiecutter.batching == 'dynamic' else '1' }}
{%- else %}
    assert settings.max_batch_size == {{ '32' if cookiecutter.batching == 'dynamic' else '1' }}
{%- endif %}
    assert settings.api_key is None
    assert settings.cors_origins == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("device", "tpu"),
        ("device", "cuda:x"),
{%- if cookiecutter.workload == 'llm' %}
        ("max_running_sequences", "0"),
        ("max_waiting_sequences", "-1"),
        ("max_tokens_per_step", "0"),
        ("context_length", "1"),
{%- else %}
        ("max_batch_size", "0"),
        ("max_queue_size", "-1"),
{%- endif %}
        ("request_timeout_s", "0"),
        ("port", "70000"),
        ("log_level", "LOUD"),
        ("model_name", "bad name/with slash"),
    ],
)
def test_rejects_invalid_values(monkeypatch: pytest.MonkeyPatch, field: str, value: str) -> None:
    monkeypatch.setenv(f"{ENV_PREFIX}{field.upper()}", value)
    with pytest.raises(ValidationError) as error:
        Settings(_env_file=None)
    assert field in str(error.value)

{%- if cookiecutter.workload != 'llm' %}


def test_queue_must_hold_a_full_batch() -> None:
    with pytest.raises(ValidationError, match="max_queue_size"):
        Settings(_env_file=None, max_batch_size=64, max_queue_size=8)
{%- endif %}


@pytest.mark.parametrize(
    ("requested", "gpus", "expected"),
    [
        ("cpu", 2, Device("cpu")),
        ("auto", 0, Device("cpu")),
        ("auto", 1, Device("cuda", 0)),
        ("cuda", 1, Device("cuda", 0)),
        ("cuda:1", 2, Device("cuda", 1)),
    ],
)
def test_resolve_device(requested: str, gpus: int, expected: Device) -> None:
    assert resolve_device(requested, gpu_count=gpus, cpu_fallback=False) == expected


def test_missing_gpu_fails_fast_without_fallback() -> None:
    with pytest.raises(DeviceUnavailable, match=r"no CUDA device is visible.*CPU_FALLBACK"):
        resolve_device("cuda", gpu_count=0, cpu_fallback=False)
    with pytest.raises(DeviceUnavailable, match="only 1 CUDA device"):
        resolve_device("cuda:3", gpu_count=1, cpu_fallback=False)


def test_missing_gpu_falls_back_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    assert resolve_device("cuda", gpu_count=0, cpu_fallback=True) == Device("cpu")
    assert "falling back to the CPU" in caplog.text
