"""Where a timm model's pretrained weights are, and fetching them where there is internet.

Looked for in order:

1. ``WEIGHTS_DIR/timm/<arch>.<tag>.safetensors`` (``--weights-dir WEIGHTS_DIR``), for machines without
   internet: copy the hub's ``model.safetensors`` there under the model's full name;
2. the Hugging Face hub cache (``HF_HOME`` / ``HF_HUB_CACHE``), where timm itself keeps downloads;
3. for models whose weights are a plain URL rather than a hub repository, torch's hub cache
   (``$TORCH_HOME/hub/checkpoints``) or ``WEIGHTS_DIR`` under the URL's file name.

Only then, and only when asked, the file is downloaded (``model.safetensors`` from the hub: never a
pickle). Without a connection the error says in one line which file is missing and where to put it.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from zoo_bench import WeightsUnavailableError

HUB_FILE = "model.safetensors"
PROBE_TIMEOUT_S = 5.0


def _cfg(name: str):
    import timm

    cfg = timm.get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise WeightsUnavailableError(
            f"timm:{name} has no pretrained weights in timm; use it with the scratch strategy or name a "
            f"pretrained tag (zoo-bench list backbones '{name.split('.')[0]}*' --pretrained)")
    return cfg


def _hub_file(cfg) -> str:
    """The file timm reads from the model's hub repository: ``model.safetensors`` unless the config names one."""
    return getattr(cfg, "hf_hub_filename", None) or HUB_FILE


def full_name(name: str) -> str:
    """``arch.tag`` with timm's default tag filled in (``convnext_tiny`` -> ``convnext_tiny.in12k_ft_in1k``)."""
    cfg = _cfg(name)
    return f"{cfg.architecture}.{cfg.tag}" if cfg.tag else cfg.architecture


def local_file(name: str, weights_dir: str | None) -> Path:
    """Where ``--weights-dir`` holds this model's weights: ``WEIGHTS_DIR/timm/<arch>.<tag>.safetensors``."""
    return Path(weights_dir or "WEIGHTS_DIR") / "timm" / f"{full_name(name)}.safetensors"


def _cached(name: str, weights_dir: str | None) -> Path | None:
    """The weights file if it is on this machine already, else None."""
    cfg = _cfg(name)
    if weights_dir and local_file(name, weights_dir).is_file():
        return local_file(name, weights_dir)
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(cfg.hf_hub_id, _hub_file(cfg))
        return Path(hit) if isinstance(hit, str) and os.path.isfile(hit) else None
    filename = os.path.basename(urlparse(cfg.url).path)
    import torch

    for folder in ([Path(weights_dir)] if weights_dir else []) + [Path(torch.hub.get_dir()) / "checkpoints"]:
        if (folder / filename).is_file():
            return folder / filename
    return None


def present(name: str, weights_dir: str | None) -> bool:
    """Whether the pretrained weights of ``name`` are on this machine (``zoo-bench list backbones``)."""
    try:
        return _cached(name, weights_dir) is not None
    except WeightsUnavailableError:
        return False


def _reachable(url: str) -> str | None:
    """None when the host of ``url`` accepts a connection within a few seconds, else why not."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    parsed = urlparse(url)
    proxy = [v for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
             if os.environ.get(v)]
    if proxy:  # the proxy decides; a direct connection says nothing about it
        return None
    try:
        port = parsed.port or (80 if parsed.scheme == "http" else 443)
        socket.create_connection((parsed.hostname, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        return f"{parsed.hostname} cannot be reached: {exc.strerror or exc}"
    return None


def locate_weights(name: str, weights_dir: str | None, download: bool = True) -> Path:
    """The local weights file of timm model ``name``, downloading it first when needed and possible."""
    found = _cached(name, weights_dir)
    if found is not None:
        return found
    cfg = _cfg(name)
    where = local_file(name, weights_dir)
    hint = (f"put it at {where}" if weights_dir
            else f"put it at WEIGHTS_DIR/timm/{where.name} and pass --weights-dir WEIGHTS_DIR")
    if cfg.hf_hub_id:
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        source = f"{endpoint}/{cfg.hf_hub_id} ({_hub_file(cfg)})"
    else:
        source = cfg.url
    why = _reachable(endpoint if cfg.hf_hub_id else cfg.url) if download else "not downloading"
    if why is None:
        try:
            return _download(cfg)
        except Exception as exc:  # network and hub errors come in many types; the message says which
            text = str(exc).strip().splitlines()
            why = f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
    raise WeightsUnavailableError(f"timm:{name}: weights file {where.name} missing: not in "
                                  f"{'--weights-dir nor ' if weights_dir else ''}the Hugging Face cache, and "
                                  f"{source} could not be fetched ({why}); {hint}")


def _download(cfg) -> Path:
    if cfg.hf_hub_id:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(cfg.hf_hub_id, _hub_file(cfg)))
    import torch

    folder = Path(torch.hub.get_dir()) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / os.path.basename(urlparse(cfg.url).path)
    torch.hub.download_url_to_file(cfg.url, str(target), progress=True)
    return target


def save_random_weights(name: str, weights_dir: str, seed: int = 0) -> Path:
    """Write a seeded random initialisation of ``name`` (classifier included) where ``--weights-dir``
    looks for it, as safetensors. For exercising the offline loading path: these are not pretrained
    weights, and accuracies measured with them mean nothing."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False)
    target = local_file(name, weights_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(target))
    return target


def main(argv: list[str] | None = None) -> int:
    """``python -m zoo_bench_torch.timm_weights NAME... --weights-dir DIR``: random stand-in weight files."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("names", nargs="+", help="timm names, with or without the timm: prefix")
    parser.add_argument("--weights-dir", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in args.names:
        name = name.split(":", 1)[1] if name.startswith("timm:") else name
        print(f"{save_random_weights(name, args.weights_dir, args.seed)}  (random weights: loading path only)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
