"""Which parts of a base a fine-tuning phase opens: the last n blocks, or named blocks, block ranges and layers.

``unfreeze`` entries (a strategy parameter) are resolved against the backbone's own lists, as the
backend reports them: a block name (``block5``, ``stage7``), a range of block indices in Python's
slice notation over the block list (``"3:5"``, ``"-2:"``), or a layer name of the backbone in that
backend (Keras layer names such as ``block5_conv3``; torch module names, full or their last part).
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import ZooBenchError


@dataclass(frozen=True)
class Parts:
    """Resolved ``unfreeze`` entries: block indices (into the block list) and layer names."""

    blocks: tuple[int, ...]
    layers: tuple[str, ...]


def _slice(entry: str) -> slice | None:
    bits = entry.split(":")
    if len(bits) != 2:
        return None
    try:
        return slice(*(int(b) if b.strip() else None for b in bits))
    except ValueError:
        return None


def resolve(entries: list[str], blocks: list[str], layers: list[str], backbone: str) -> Parts:
    """``entries`` as :class:`Parts`; an entry that names nothing is refused in one line with the lists."""
    chosen: list[int] = []
    named: list[str] = []
    by_last: dict[str, list[str]] = {}
    for name in layers:
        by_last.setdefault(name.rsplit(".", 1)[-1], []).append(name)
    for entry in entries:
        span = _slice(entry)
        if entry in blocks:
            chosen.append(blocks.index(entry))
        elif span is not None and range(len(blocks))[span]:
            chosen.extend(range(len(blocks))[span])
        elif entry in layers:
            named.append(entry)
        elif len(by_last.get(entry, [])) == 1:
            named.append(by_last[entry][0])
        else:
            sample = ", ".join(layers[:3] + ["..."] + layers[-3:]) if len(layers) > 6 else ", ".join(layers)
            raise ZooBenchError(
                f"unfreeze: {entry!r} names no block, block range or layer of {backbone} (blocks: "
                f"{', '.join(blocks)}; ranges like \"{len(blocks) - 2}:\" over those {len(blocks)}; "
                f"or one of its {len(layers)} layers with weights: {sample})")
    return Parts(tuple(sorted(set(chosen))), tuple(dict.fromkeys(named)))
