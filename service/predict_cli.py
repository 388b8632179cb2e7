"""``python -m service predict FILE...`` (also ``mnist-predict``): the server's prediction on local files.

No server and no HTTP: the same model manager (verify, load, warm up), the same picture decoder under the
same budgets, the same batcher and guards. PNG/JPEG pictures, or JSON files holding ``{"image": 28x28}``
in the form ``POST /predict`` takes. One line per file, in order (``--json``: one JSON object per line).

Exit status: 0 when every file was answered, 1 when any was refused (not a digit, blank, undecodable,
unreadable), 2 for bad usage (unknown flag, a missing file, no loadable version).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import orjson

from service.errors import DeviceUnavailable, InvalidJSON, ServiceError
from service.inference.answers import named
from service.settings import MODEL_REF_RULE, Settings, valid_model_ref

EXIT_ANSWERED, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m service predict",
        description="Classify digits in local files with the server's decoding, guards and model.",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="PNG/JPEG pictures or JSON digits")
    parser.add_argument("--models", type=Path, help="registry root (default: MNIST_MODEL_DIR, else models)")
    parser.add_argument(
        "--version", type=_model_ref, help="version number or alias to load (default: MNIST_MODEL_REF, production)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    return parser.parse_args(argv)


def _model_ref(text: str) -> str:
    if not valid_model_ref(text):
        raise argparse.ArgumentTypeError(MODEL_REF_RULE)
    return text


def settings_for(args: argparse.Namespace) -> Settings:
    # One load, no registry watcher; it serves nothing, so /admin's token is none of its concern.
    overrides: dict[str, Any] = {"poll_interval_s": 0, "admin_token": None}
    if args.models is not None:
        overrides["model_dir"] = args.models
    if args.version is not None:
        overrides["model_ref"] = args.version
    return Settings(**overrides)


async def _image(path: Path, decoder: Any) -> Any:
    from service.inputs import json_input

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidJSON(f"cannot read the file: {exc.strerror}") from None  # refused like a bad body
    if path.suffix.lower() == ".json":
        try:
            return json_input.parse_json_request(orjson.loads(data))
        except orjson.JSONDecodeError as exc:
            raise InvalidJSON(f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    return await decoder(data)


def _line(path: Path, result: Any, as_json: bool) -> str:
    if isinstance(result, ServiceError):
        if as_json:
            return orjson.dumps({"file": str(path), "error": {"code": result.code, "message": result.message}}).decode()
        return f"{path}: refused ({result.code}): {result.message}"
    if as_json:
        answer = {
            "file": str(path),
            "digit": result.digit,
            "confidence": round(result.confidence, 6),
            "probabilities": [round(p, 6) for p in result.probabilities],
            "model_version": result.model_version,
        }
        return orjson.dumps(answer).decode()
    return f"{path}: {result.digit} (confidence {result.confidence:.3f}, version {result.model_version})"


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from service.inference.model_manager import ModelManager
    from service.inputs.decoder import ImageDecoder

    manager = ModelManager(settings)
    decoder = ImageDecoder(settings, manager)
    try:
        await manager.start(stand_in=False)  # the version asked for, or none: never another one in its place
    except DeviceUnavailable as exc:  # the configured device cannot be used: a setting to change, as at serve
        print(f"MNIST_DEVICE: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    if not manager.ready:
        print(f"no model to predict with: {manager.not_ready_reason}", file=sys.stderr)
        await manager.stop()
        return EXIT_USAGE
    decoder.start()
    refused = False
    try:
        for path in args.files:
            try:
                image = await _image(path, decoder)
                (result,) = await manager.predict(image[None])
                if isinstance(result, ServiceError):
                    result = named(result, "the image")  # in the server's words for one image
            except ServiceError as exc:
                result = exc
            refused = refused or isinstance(result, ServiceError)
            print(_line(path, result, args.json), flush=True)
    finally:
        decoder.stop()
        await manager.stop()
    return EXIT_REFUSED if refused else EXIT_ANSWERED


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)  # argparse exits 2 on bad usage
    missing = [str(p) for p in args.files if not p.is_file()]
    if missing:
        print(f"no such file: {', '.join(missing[:5])}", file=sys.stderr)
        return EXIT_USAGE
    from pydantic import ValidationError

    from service.settings import describe_validation_error

    try:
        settings = settings_for(args)
    except ValidationError as exc:
        print(describe_validation_error(exc), file=sys.stderr)
        return EXIT_USAGE
    logging.getLogger("service").setLevel(logging.CRITICAL)  # progress and load errors: the reason is printed once
    return asyncio.run(run(args, settings))
