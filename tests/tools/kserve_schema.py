"""KServe's InferenceService schema, as its Python SDK's generated model classes define it: ``schema_errors``.

Run as a script (``python tests/tools/kserve_schema.py`` with a JSON list of documents on stdin, a JSON list
of error lists on stdout): the SDK's package imports its own copy of the Open Inference Protocol's protobuf
messages, which clash in one process with the copy tritonclient registers (both name them ``inference.*``),
so the tests ask a child process.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import kserve.models
import kubernetes.client

PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "bool": (bool,),
    "float": (int, float),
    "object": (object,),
    "ResourceQuantity": (str, int, float),
    "datetime": (str,),
}


def model_class(name: str) -> Any:
    found = getattr(kserve.models, name, None) or getattr(kubernetes.client, name, None)
    assert found is not None, f"no schema class {name}"
    return found


def schema_errors(value: Any, type_name: str, where: str) -> list[str]:
    """Every place where ``value`` is not a ``type_name`` as the SDK's generated classes define it."""
    if type_name in PRIMITIVES:
        ok = isinstance(value, PRIMITIVES[type_name]) and not (type_name == "int" and isinstance(value, bool))
        return [] if ok else [f"{where}: expected {type_name}, got {type(value).__name__}"]
    # The two generators spell containers differently: list[X] / dict(str, X) and List[X] / Dict[str, X].
    if match := re.fullmatch(r"[lL]ist\[(.+)\]", type_name):
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        return [e for i, item in enumerate(value) for e in schema_errors(item, match[1], f"{where}[{i}]")]
    if match := re.fullmatch(r"dict\(str, (.+)\)|Dict\[str, (.+)\]", type_name):
        if not isinstance(value, dict):
            return [f"{where}: expected a mapping"]
        item_type = match[1] or match[2]
        return [e for k, item in value.items() for e in schema_errors(item, item_type, f"{where}.{k}")]
    cls = model_class(type_name)
    if not isinstance(value, dict):
        return [f"{where}: expected a {type_name} mapping"]
    field_by_key = {key: attr for attr, key in cls.attribute_map.items()}
    errors = []
    for key, item in value.items():
        if key not in field_by_key:
            errors.append(f"{where}.{key}: not a field of {type_name}")
        else:
            errors += schema_errors(item, cls.openapi_types[field_by_key[key]], f"{where}.{key}")
    return errors


if __name__ == "__main__":
    documents = json.load(sys.stdin)
    json.dump([schema_errors(doc, "V1beta1InferenceService", name) for name, doc in documents], sys.stdout)
