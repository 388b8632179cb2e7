"""Domain errors of the service. Plain exceptions, no HTTP here.

Each carries a stable machine-readable ``code``; ``service/api/errors.py`` maps
the classes to status codes and the one JSON error envelope. Messages say what
was wrong and where, and never echo the input.
"""

from __future__ import annotations


class ServiceError(Exception):
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# ---- request shape (before any decoding) ------------------------------------
class PayloadTooLarge(ServiceError):
    code = "payload_too_large"


class UnsupportedMediaType(ServiceError):
    code = "unsupported_media_type"


class UnsupportedEncoding(ServiceError):
    code = "unsupported_encoding"


class RequestTimeout(ServiceError):
    """The body did not arrive in time (a trickling or stalled client); the connection is closed."""

    code = "request_timeout"


class InvalidMultipart(ServiceError):
    code = "invalid_multipart"


class InvalidJSON(ServiceError):
    code = "invalid_json"


class InvalidInput(ServiceError):
    """JSON that parsed but is not 28x28 numbers in range (says where)."""

    code = "invalid_input"


class TooManyImages(ServiceError):
    code = "too_many_images"


class UnknownInclude(ServiceError):
    """``?include=`` names something a prediction answer cannot add (only ``input`` exists)."""

    code = "unknown_include"


# ---- images --------------------------------------------------------------------
class UnsupportedImageFormat(ServiceError):
    code = "unsupported_image_format"


class InvalidImage(ServiceError):
    """Truncated, corrupt or otherwise undecodable image bytes."""

    code = "invalid_image"


class ImageTooLarge(ServiceError):
    code = "image_too_large"


class MultiFrameImage(ServiceError):
    code = "multi_frame_image"


class DecodeTimeout(ServiceError):
    code = "decode_timeout"


# ---- content -------------------------------------------------------------------
class NoDigit(ServiceError):
    """A blank canvas: nothing to classify."""

    code = "no_digit"


class NotADigit(ServiceError):
    code = "not_a_digit"


class SuspectedAdversarial(ServiceError):
    code = "suspected_adversarial"


class ModelNotFound(ServiceError):
    """An Open Inference Protocol request names a model this service does not serve (only ``mnist``)."""

    code = "model_not_found"


# ---- capacity and model ----------------------------------------------------------
class QueueFull(ServiceError):
    code = "queue_full"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(ServiceError):
    code = "deadline_exceeded"


class ModelNotReady(ServiceError):
    code = "model_not_ready"


class ModelLoadError(ServiceError):
    """A version could not be verified or loaded (checksum, format, device)."""

    code = "model_load_failed"


class InferenceError(ServiceError):
    code = "inference_failed"


class DeviceUnavailable(ServiceError):
    """MNIST_DEVICE=cuda on a machine without a usable GPU provider."""

    code = "device_unavailable"


# ---- admin ------------------------------------------------------------------------
class Unauthorized(ServiceError):
    code = "unauthorized"


class Forbidden(ServiceError):
    code = "forbidden"


# What one image can be refused with: the whole answer of /predict, an entry of /predict/batch's answer. No schema
# can rule these out (bytes that are no PNG/JPEG, a blank canvas, something that is not a digit). Anything else
# (the model not ready, a full queue) is the service's state and refuses a batch as a whole.
IMAGE_ERRORS: tuple[type[ServiceError], ...] = (
    UnsupportedImageFormat,
    InvalidImage,
    ImageTooLarge,
    MultiFrameImage,
    DecodeTimeout,
    NoDigit,
    NotADigit,
    SuspectedAdversarial,
)
