"""Schemathesis hooks (schemathesis.toml): the one check that narrows which schema-valid requests may be refused.

The built-in ``positive_data_acceptance`` check judges by status alone; schemathesis.toml lets 400, 415 and 422
through it, and ``refused_only_for_content`` below takes them back unless the answer's ``error.code`` is a
refusal of the content itself, which no schema can rule out. Every operation is judged by the same rule, so a
route added later (the ``/v2`` protocol routes) is held to it with no line here.
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
# The statuses schemathesis.toml adds to positive_data_acceptance's defaults: the ones judged here by code.
JUDGED_STATUSES = {400, 415, 422}


@schemathesis.check
def refused_only_for_content(ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case):
    """A schema-valid request refused with 400/415/422 passes only for a content-level refusal."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code not in JUDGED_STATUSES:
        return None
    try:
        error = json.loads(response.content).get("error")
    except (ValueError, AttributeError):
        error = None
    code = error.get("code") if isinstance(error, dict) else error
    if code not in CONTENT_REFUSALS:
        raise AssertionError(
            f"Schema-valid request rejected: {response.status_code} {code!r} is not a content-level refusal "
            f"({', '.join(sorted(CONTENT_REFUSALS))}); the schema promises more than the server accepts"
        )
    return None
