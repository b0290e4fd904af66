"""timm's catalogue as zoo-bench backbones: ``timm:<arch>`` or ``timm:<arch>.<tag>``.

Naming: timm's own model name after ``timm:``. timm writes pretrained weights as ``arch.tag``
(``convnext_tiny.fb_in22k``), which already has no ``/`` (trial ids and file names use it), so a
suite can paste a name from ``timm.list_pretrained()`` or from a hub id ``timm/<arch>.<tag>``
without the ``timm/``. A bare ``arch`` means timm's default tag, resolved and recorded in each row's
``weights`` column. Importing this module imports neither torch nor timm.
"""
from __future__ import annotations

import fnmatch
from functools import lru_cache, partial
from typing import Any

from zoo_bench import BackboneSpec, ZooBenchError
from zoo_bench.catalog import BackboneCatalog

PREFIX = "timm"
INSTALL = "pip install 'zoo-bench[timm]'"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _timm() -> Any:
    try:
        import timm
    except ImportError as exc:
        raise ZooBenchError(f"timm is not installed here ({exc}); install it with: {INSTALL}") from None
    return timm


def _build(name: str, **kwargs: Any) -> Any:
    from . import timm_models  # imports torch and timm

    return timm_models.build(name, **kwargs)


def _present(name: str, weights_dir: str | None) -> bool:
    from .timm_weights import present

    return present(name, weights_dir)


VIT_MODULES = ("vision_transformer", "deit", "vision_transformer_hybrid")  # timm modules of VisionTransformer models


@lru_cache(maxsize=1)
def _vision_transformers() -> frozenset[str]:
    """timm architectures built as its ``VisionTransformer`` (or a subclass): what ``vpt`` prompts."""
    timm = _timm()
    return frozenset(arch for module in VIT_MODULES for arch in timm.list_models(module=module))


def resolve(name: str) -> BackboneSpec | None:
    """The spec of timm model ``name`` (``arch`` or ``arch.tag``), or None if timm has no such model."""
    timm = _timm()
    arch, _, tag = name.partition(".")
    if not name or "/" in name or not timm.is_model(arch):
        return None
    try:
        cfg = timm.get_pretrained_cfg(name)
    except RuntimeError:  # timm: "Invalid pretrained tag (...)"
        return None
    if tag and (cfg is None or cfg.tag != tag):
        return None
    has_weights = cfg is not None and bool(cfg.hf_hub_id or cfg.url)
    full = f"{arch}.{cfg.tag}" if cfg is not None and cfg.tag else arch
    interpolation = cfg.interpolation if cfg is not None and cfg.interpolation in ("bilinear", "bicubic", "nearest") \
        else "bicubic"
    return BackboneSpec(
        name=f"{PREFIX}:{name}", backend="torch",
        image_size=int(cfg.input_size[-1]) if cfg is not None else 224,
        mean=tuple(cfg.mean) if cfg is not None else IMAGENET_MEAN,
        std=tuple(cfg.std) if cfg is not None else IMAGENET_STD,
        crop_pct=float(cfg.crop_pct) if cfg is not None and cfg.crop_pct else 1.0,
        interpolation=interpolation,
        crop_mode=cfg.crop_mode if cfg is not None and cfg.crop_mode in ("center", "squash", "border") else "center",
        builder=partial(_build, name),
        weights=f"timm:{full}" if has_weights else "none",
        weights_present=partial(_present, name) if has_weights else None,
        description=f"timm {timm.__version__} {full}",
        family="vit" if arch in _vision_transformers() else "",
    )


def names(pattern: str, pretrained: bool) -> list[str]:
    """``timm:`` names matching ``pattern`` (shell-style, case-insensitive), tags included."""
    timm = _timm()
    found = timm.list_pretrained(pattern.lower() or "*") if pretrained else \
        timm.list_models(pattern.lower() or "*", include_tags=True)
    if pattern and "." not in pattern:  # 'vit*' also finds architectures whose tags it does not match
        found = [n for n in found if fnmatch.fnmatch(n.split(".")[0], pattern.lower()) or fnmatch.fnmatch(n, pattern.lower())]
    return [f"{PREFIX}:{n}" for n in found]


CATALOG = BackboneCatalog(name=PREFIX, backend="torch", resolve=resolve, names=names,
                          description="timm's models by timm name (timm:ARCH or timm:ARCH.TAG)")
