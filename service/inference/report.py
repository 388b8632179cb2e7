"""What ``GET /models`` reports of a model manager: the version served, the registry, the
settings that shape serving. It reads the registry from disk: callers run it off the event loop."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from registry import RegistryError

if TYPE_CHECKING:
    from service.inference.model_manager import ModelManager

KEY_METRICS = ("test_accuracy", "ece", "fgsm", "latency_us_per_image", "guards")
BATCH_SETTINGS = ("max_batch_size", "max_batch_delay_ms", "max_queue_size")


def status(manager: ModelManager) -> dict[str, Any]:
    model, settings = manager.current, manager.settings
    try:
        versions: list[dict[str, Any]] | str = [asdict(v) for v in manager.registry.describe()]
        aliases: dict[str, int] | str = manager.registry.aliases()
    except (RegistryError, OSError) as exc:
        versions = aliases = f"registry unreadable: {exc!s}"[:300]
    meta_metrics = model.metadata.get("metrics", {}) if model else {}
    return {
        "ready": manager.ready,
        "not_ready_reason": manager.not_ready_reason,
        "model_ref": settings.model_ref,
        "model_version": model.version if model else None,
        "backend": model.backend.name if model else settings.backend,
        "device": model.backend.device if model else None,
        "requested_device": settings.device,
        "providers": list(model.backend.providers) if model else [],
        "loaded_at": model.loaded_at if model else None,
        "last_load_error": manager.last_load_error,
        "guards": settings.guards,
        "batching": {"enabled": settings.batching, "queue_depth": manager.queue_depth}
        | {name: getattr(settings, name) for name in BATCH_SETTINGS},
        "versions": versions,
        "aliases": aliases,
        "metrics": {k: meta_metrics[k] for k in KEY_METRICS if k in meta_metrics},
    }
