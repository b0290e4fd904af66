"""Backbone catalogues: families of backbones too many to register one by one.

timm alone names about 1,800 pretrained models. A plugin registers such a family as one
:class:`BackboneCatalog` named by a prefix (``timm``); a suite then names any member as
``PREFIX:NAME`` (``timm:convnext_tiny.fb_in22k``) and the catalogue turns that name into a
:class:`~zoo_bench.BackboneSpec` when it is first asked for. Listing the catalogue builds nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .backend import BackboneSpec


@dataclass(frozen=True)
class BackboneCatalog:
    """A named family of backbones of one backend, resolved by name on demand.

    Attributes:
        name: the prefix suites write before ``:`` (``timm``); no ``:`` or ``/`` in it.
        backend: the backend that runs every member.
        resolve: ``resolve(rest)`` for the part after ``name:``: its spec, or None when the catalogue
            has no such member. It raises :class:`~zoo_bench.ZooBenchError` (one line) when it
            cannot tell here, for instance because the library behind it is not installed.
        names: ``names(pattern, pretrained)``: the members whose part after ``name:`` matches the
            shell-style ``pattern`` (case-insensitive), full names, without building any model;
            with ``pretrained`` only those that have pretrained weights.
        description: one line for ``zoo-bench plugins``.
    """

    name: str
    backend: str
    resolve: Callable[[str], BackboneSpec | None]
    names: Callable[[str, bool], list[str]]
    description: str = ""

    @property
    def prefix(self) -> str:
        """What every member's name starts with: ``timm:``."""
        return f"{self.name}:"
