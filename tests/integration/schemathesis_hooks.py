"""Schemathesis hooks (schemathesis.toml): two checks on the error envelope's ``code``, which the built-in checks
judge by status alone.

- ``refused_only_for_content``: schemathesis.toml lets 400, 415 and 422 through the built-in
  ``positive_data_acceptance``; this takes them back unless the answer's ``error.code`` is a refusal of the
  content itself, which no schema can rule out.
- ``error_code_is_documented``: an error answer's code is one of those the operation's schema lists for that
  status (``x-error-codes``, written by service/api/openapi.py).

Every operation is judged by the same rules, so a route added later (the ``/v2`` protocol routes) is held to
them with no line here; an answer whose schema lists no codes (another error shape) is left to the built-ins.
"""

from __future__ import annotations

import json

import schemathesis

CONTENT_REFUSALS = {
    # A blank canvas: a schema can say "28x28 numbers in 0..255", not "with some ink on it".
    "no_digit",
    # The guards' verdicts on what the pixels show: no schema can say "looks like a handwritten digit".
    "not_a_digit",
    "suspected_adversarial",
    # Bytes sent as image/png or image/jpeg that are no picture of that kind (415) or do not decode (400): a
    # schema's binary string has no magic bytes, chunks or markers to describe.
    "unsupported_image_format",
    "invalid_image",
}
ERROR_CODES = "x-error-codes"
OIP_INFER = "/infer"
# The statuses schemathesis.toml adds to positive_data_acceptance's defaults: the ones judged here by code.
JUDGED_STATUSES = {400, 415, 422}


@schemathesis.check
def refused_only_for_content(ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case):
    """A schema-valid request refused with 400/415/422 passes only for a content-level refusal."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code not in JUDGED_STATUSES:
        return None
    if case.path.endswith(OIP_INFER):  # the protocol's own loose request: see schemathesis.toml
        return None
    code = error_code(response)
    if code not in CONTENT_REFUSALS:
        raise AssertionError(
            f"Schema-valid request rejected: {response.status_code} {code!r} is not a content-level refusal "
            f"({', '.join(sorted(CONTENT_REFUSALS))}); the schema promises more than the server accepts"
        )
    return None


@schemathesis.check
def error_code_is_documented(ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case):
    """The envelope's code is one the operation documents for this status."""
    documented = case.operation.definition.raw.get("responses", {}).get(str(response.status_code), {})
    codes = documented.get(ERROR_CODES)
    if codes is None:
        return None
    code = error_code(response)
    if code not in codes:
        raise AssertionError(
            f"Undocumented error code: {response.status_code} {code!r}; the schema lists {', '.join(codes)}"
        )
    return None


def error_code(response: schemathesis.Response) -> object:
    """``error.code`` of our envelope (or the error itself, where a protocol answers a bare string)."""
    try:
        error = json.loads(response.content).get("error")
    except (ValueError, AttributeError):
        return None
    return error.get("code") if isinstance(error, dict) else error
