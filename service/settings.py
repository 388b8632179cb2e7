"""The one settings object of the service: environment variables with the ``MNIST_`` prefix.

Validated at start; a bad value stops the process with a message that names
the variable and says how to fix it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from registry.files import MAX_VERSION

MIN_POLL_INTERVAL_S = 0.1
# scheme://host[:port], nothing after it: what a browser sends in its Origin header.
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MNIST_", extra="ignore", frozen=True)

    # where and what to serve
    model_dir: Path = Field(Path("models"), description="Registry root (holds mnist/<version>/).")
    model_ref: str = Field("production", description="Alias or version number to serve at start.")
    backend: Literal["onnx", "savedmodel"] = Field("onnx", description="Runtime; savedmodel imports TensorFlow.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto takes CUDA when onnxruntime-gpu sees a GPU."
    )
    intra_op_threads: int = Field(1, ge=0, le=256, description="Threads inside one model call (0 = runtime default).")
    inter_op_threads: int = Field(1, ge=0, le=256, description="Threads across graph branches (0 = runtime default).")

    # HTTP server
    host: str = Field("127.0.0.1", description="Bind address.")
    port: int = Field(8000, ge=1, le=65535, description="Bind port.")
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes.")
    grpc_port: int = Field(
        0, ge=0, le=65535, description="Open Inference Protocol over gRPC on this port (same host); 0 = off."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level (JSON logs).")
    timeout_keep_alive_s: int = Field(5, ge=1, le=300, description="Idle keep-alive connection timeout.")
    limit_concurrency: int = Field(
        1024,
        ge=8,
        le=100_000,
        description="Open connections per worker; beyond it uvicorn answers a plain 503 "
        "(gRPC: calls at once and connections).",
    )

    # dynamic batching
    batching: bool = Field(True, description="Gather concurrent requests into one model call.")
    max_batch_size: int = Field(
        64,
        ge=1,
        le=4096,
        description="Most model rows in one call, not images: with the guards on each image is 3 rows "
        "(itself and two squeezed copies), so 21 images by default.",
    )
    max_batch_delay_ms: float = Field(2.0, ge=0, le=1000, description="Longest wait to fill a batch.")
    max_queue_size: int = Field(1024, ge=1, le=1_000_000, description="Images waiting; beyond it 503 + Retry-After.")
    request_timeout_s: float = Field(
        5.0, ge=0.01, le=300, description="Deadline for one request's inference; then 504."
    )

    # hot swap
    poll_interval_s: float = Field(
        2.0, ge=0, le=3600, description="Registry poll period (0.1 s at least); 0 turns watching off."
    )

    # input limits
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024, description="Request body cap.")
    max_batch_images: int = Field(256, ge=1, le=10_000, description="Most images in one /predict/batch request.")
    max_image_side: int = Field(4096, ge=28, le=20_000, description="Largest image width or height in pixels.")
    max_image_pixels: int = Field(
        4_000_000, ge=784, le=89_000_000, description="Largest width x height decoded (large JPEGs at 1/2-1/8 scale)."
    )
    decode_timeout_s: float = Field(2.0, gt=0, le=60, description="Time budget for decoding one image.")
    body_timeout_s: float = Field(
        10.0, gt=0, le=600, description="Deadline for receiving a whole request body; slower clients get 408."
    )

    # output and protection
    return_probabilities: bool = Field(True, description="False returns only the digit and a rounded confidence.")
    guards: bool = Field(True, description="Refuse non-digits and suspected adversarial inputs.")
    admin_token: SecretStr | None = Field(None, description="Enables /admin/* with Authorization: Bearer <token>.")

    # browser pages and cross-origin callers
    ui: bool = Field(True, description="Serve the digit pad at / and the model card pages; false removes them.")
    docs: bool = Field(
        True, description="Serve the API documentation at /docs and the schema at /openapi.json; false removes both."
    )
    # NoDecode: a comma-separated list, not the JSON pydantic-settings would expect for a list.
    cors_origins: Annotated[tuple[str, ...] | None, NoDecode] = Field(
        None, description="Comma-separated origins (https://example.org) allowed to call the API from a browser."
    )

    @field_validator("log_level", "backend", "device", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        # MNIST_LOG_LEVEL=WARNING is how Python's logging spells it; the choices are words, not case-sensitive keys.
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("model_dir")
    @classmethod
    def _a_folder(cls, value: Path) -> Path:
        # Absent is fine (the service waits for `make train`); a file there would only ever read as "no versions".
        try:
            if value.exists() and not value.is_dir():
                raise ValueError("must be a folder (the registry root), and this is a file")
        except OSError as exc:  # a parent it may not enter, a name too long: pydantic reports only ValueErrors
            raise ValueError(f"cannot be looked at: {exc.strerror}") from None
        return value

    @field_validator("host")
    @classmethod
    def _an_address(cls, value: str) -> str:
        # An empty one (an unset variable interpolated by a shell or compose) would make uvicorn listen everywhere.
        if not value or value != value.strip():
            raise ValueError("must be an address to listen on, such as 127.0.0.1, 0.0.0.0 or ::1")
        return value

    @field_validator("poll_interval_s")
    @classmethod
    def _off_or_a_pause(cls, value: float) -> float:
        if 0 < value < MIN_POLL_INTERVAL_S:  # a poll each microsecond keeps a core busy reading the registry
            raise ValueError(f"must be 0 (off) or at least {MIN_POLL_INTERVAL_S} s")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not value:
            return None
        bad = [origin for origin in value if origin != "*" and not _ORIGIN.fullmatch(origin)]
        if bad:
            raise ValueError(
                f"each origin must be scheme://host[:port] with no path or trailing slash (or *), got {bad[0][:60]!r}"
            )
        return tuple(value)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if not valid_model_ref(self.model_ref):
            raise ValueError(f"MNIST_MODEL_REF {MODEL_REF_RULE}")
        if self.grpc_port and self.grpc_port == self.port:
            raise ValueError("MNIST_GRPC_PORT must differ from MNIST_PORT (or be 0 to turn gRPC off)")
        if self.max_image_pixels > self.max_image_side**2:
            raise ValueError("MNIST_MAX_IMAGE_PIXELS must not exceed MNIST_MAX_IMAGE_SIDE squared")
        if self.admin_token is not None and len(self.admin_token.get_secret_value()) < 16:
            raise ValueError("MNIST_ADMIN_TOKEN must be at least 16 characters (or unset to disable /admin)")
        return self


MODEL_REF_RULE = f"must be an alias (production, staging) or a version number in 1..{MAX_VERSION}"


def valid_model_ref(ref: str) -> bool:
    ref = ref.strip()
    return ref in ("production", "staging") or (ref.isascii() and ref.isdigit() and 0 < int(ref) <= MAX_VERSION)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A line per ``MNIST_`` variable that names no setting, with the nearest that does: pydantic-settings ignores
    them, so MNIST_MAX_BODY_BYTE=... would leave the default in force without a word."""
    known = [f"MNIST_{name.upper()}" for name in Settings.model_fields]
    lines = []
    for name in sorted(environ):
        if name.upper().startswith("MNIST_") and name.upper() not in known:
            near = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.8)
            lines.append(f"{name} is not a setting and is ignored" + (f"; did you mean {near[0]}?" if near else ""))
    return lines


def _secret(name: str) -> bool:
    field = Settings.model_fields.get(name)
    return field is not None and (field.annotation is SecretStr or SecretStr in get_args(field.annotation))


def describe_validation_error(error: ValidationError) -> str:
    """One line per bad variable: which MNIST_ variable, what was wrong, how to fix it; never a secret's value."""
    lines = []
    for item in error.errors():
        loc = item.get("loc") or ()
        if not loc:  # a rule across variables: its message names them, and its input is every setting, secrets too
            lines.append(str(item.get("msg")).removeprefix("Value error, "))
            continue
        shown = "hidden" if _secret(str(loc[0])) else repr(str(item.get("input"))[:60])
        message = str(item.get("msg")).removeprefix("Value error, ")
        lines.append(f"MNIST_{str(loc[0]).upper()}: {message} (got {shown})")
    return "invalid configuration:\n  " + "\n  ".join(lines)
