"""The plan of a sweep: its cells (a model and one setting) and runs (a cell made with one
seed: a :class:`~numnet.lab.training.RunSpec` whose ``replicate`` labels it), from a protocol,
an optional grid of settings and a number of seeds. The seed rules are in
:mod:`numnet.lab.sweep`."""

from __future__ import annotations

import dataclasses
import itertools
import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from numnet.core.errors import NumnetError
from numnet.lab import protocol as protocol_mod
from numnet.lab.experiments.plan import plan_runs
from numnet.lab.protocol import Protocol
from numnet.lab.training import RunSpec


@dataclass(frozen=True)
class Cell:
    """One cell of the summary: a model and one setting, made ``seeds`` times.

    ``spec`` is the cell's RunSpec with ``seed=0`` (the replicates differ only in the seed);
    ``seed_key`` is None when the seeds are the protocol's (``numnet.lab.experiments.run_seed``)
    and the setting's content key when they come from a grid.
    """

    cell_id: str
    model: str
    setting: int
    label: str
    spec: RunSpec
    seed_key: str | None = None


@dataclass(frozen=True)
class SweepPlan:
    """The cells and runs of a sweep, in order (models, then settings, then replicates)."""

    protocol: Protocol
    seeds: int
    grid: dict[str, list[Any]]
    cells: tuple[Cell, ...]
    runs: tuple[RunSpec, ...]

    def to_dict(self) -> dict[str, Any]:
        p = self.protocol
        return {
            "protocol": {"name": p.name, "source": p.source, "hash": p.hash, "seed": p.seed,
                         "quick": p.quick, "dataset": p.dataset,
                         "validation_size": p.validation_size,
                         "models": [m.name for m in p.models], "text": p.text},
            "seeds": self.seeds,
            "grid": self.grid,
            "cells": [{"cell_id": c.cell_id, "model": c.model, "setting": c.setting,
                       "label": c.label, "seed_key": c.seed_key, "spec": c.spec.to_dict()}
                      for c in self.cells],
            "tasks": [{"task_id": s.run_id, "cell_id": cell_id(s), "replicate": s.replicate,
                       "seed": s.seed} for s in self.runs],
        }


def cell_id(spec: RunSpec) -> str:
    """The cell a sweep's run belongs to: its run id without the replicate
    (``model4-setting2-seed3`` -> ``model4-setting2``)."""
    return dataclasses.replace(spec, replicate=None).run_id


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError("must be a positive finite number")
    return value


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text
    return parse


#: Grid keys and how their values are parsed; every key is a RunSpec field.
GRID_KEYS: dict[str, Callable[[str], Any]] = {
    "lr": _positive_float,
    "epochs": _positive_int,
    "batch_size": _positive_int,
    "reduction": _choice(protocol_mod.REDUCTIONS),
    "bias_init": _choice(protocol_mod.BIAS_INITS),
    "conv_activation": _choice(protocol_mod.CONV_ACTIVATIONS),
}


def parse_grid(items: Sequence[str] | None) -> dict[str, list[Any]]:
    """``["lr=0.1,0.01", "epochs=5,10"]`` -> ``{"lr": [0.1, 0.01], "epochs": [5, 10]}``.

    Keys: see :data:`GRID_KEYS`. Values keep their order; duplicates are dropped. A key given
    twice is an error. Raises NumnetError naming the offending item.
    """
    grid: dict[str, list[Any]] = {}
    for item in items or ():
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise NumnetError(f"--grid {item!r}: expected KEY=V1,V2,... (e.g. lr=0.1,0.01)")
        if key not in GRID_KEYS:
            raise NumnetError(
                f"--grid {item!r}: unknown key {key!r}; use one of {', '.join(GRID_KEYS)}"
            )
        if key in grid:
            raise NumnetError(f"--grid: key {key!r} given twice; list all its values once")
        parsed: list[Any] = []
        for text in values.split(","):
            text = text.strip()
            if not text:
                continue
            try:
                value = GRID_KEYS[key](text)
            except ValueError as exc:
                raise NumnetError(f"--grid {key}={text!r}: {exc}") from None
            if value not in parsed:
                parsed.append(value)
        if not parsed:
            raise NumnetError(f"--grid {item!r}: no value given for {key!r}")
        grid[key] = parsed
    return grid


def setting_key(spec: RunSpec, keys: Iterable[str]) -> str:
    """The content key of a grid setting: ``"epochs=5;lr=0.1"`` (sorted keys, exact reprs)."""
    return ";".join(f"{k}={getattr(spec, k)!r}" for k in sorted(set(keys) | {"epochs", "lr"}))


def grid_seed(base_seed: int, model: str, key: str) -> int:
    """Seed of a grid setting's run: ``SeedSequence([base_seed, crc32(model), crc32(key)])``'s
    first uint32 word (independent of the other settings and of their order)."""
    ss = np.random.SeedSequence([base_seed, zlib.crc32(model.encode()), zlib.crc32(key.encode())])
    return int(ss.generate_state(1)[0])


def _label(spec: RunSpec, keys: Iterable[str]) -> str:
    label = f"Epochs: {spec.epochs}, Learning rate: {spec.lr:g}"
    extra = [f"{k}={getattr(spec, k)}" for k in sorted(set(keys) - {"epochs", "lr"})]
    return label + (f" ({', '.join(extra)})" if extra else "")


#: The most runs one sweep may plan (a typo's ``--seeds 100000000`` is refused at once).
MAX_SWEEP_RUNS = 10**4


def expand(
    protocol: Protocol,
    seeds: int,
    grid: dict[str, list[Any]] | None = None,
    models: list[str] | None = None,
) -> SweepPlan:
    """Expand protocol x grid x seeds into cells and runs (seed rules: :mod:`numnet.lab.sweep`);
    replicate ``r`` of cell ``c`` has run id ``c-seed{r}``.

    With a grid, each model's settings become: for every protocol setting, every combination
    of the grid's values replacing the corresponding fields; duplicates are merged (first
    occurrence kept). E.g. ``lr=0.1,0.01`` on model 3's (5, 0.003), (40, 0.003), (40, 0.05)
    gives (5, 0.1), (5, 0.01), (40, 0.1), (40, 0.01).
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise NumnetError(f"--seeds must be a positive integer, got {seeds!r}")
    grid = dict(grid or {})
    base = plan_runs(protocol, models)  # replicate 0 of the protocol; validates ``models``
    combinations = math.prod(len(v) for v in grid.values())
    planned = len(base) * combinations * seeds  # at most: the grid's duplicates are merged
    if planned > MAX_SWEEP_RUNS:
        raise NumnetError(
            f"--seeds {seeds} x {len(base) * combinations} settings plans {planned} runs, more "
            f"than the {MAX_SWEEP_RUNS} numnet sweeps at once; use fewer --seeds, --grid "
            "values or --models")
    if not grid:  # replicate r: the runs of the protocol seeded s + r
        cells = [Cell(s.run_id, s.model, int(s.setting or 1), _label(s, ()),
                      dataclasses.replace(s, seed=0)) for s in base]
        replicas = [plan_runs(protocol.with_seed(protocol.seed + r), models)
                    for r in range(seeds)]
        runs = [dataclasses.replace(replicas[r][k], replicate=r)
                for k in range(len(base)) for r in range(seeds)]
        return SweepPlan(protocol, seeds, grid, tuple(cells), tuple(runs))
    keys = list(grid)
    by_model: dict[str, list[RunSpec]] = {}
    for spec in base:
        for values in itertools.product(*(grid[k] for k in keys)):
            changed = dataclasses.replace(spec, seed=0, setting=None,
                                          **dict(zip(keys, values, strict=True)))
            if changed not in by_model.setdefault(spec.model, []):
                by_model[spec.model].append(changed)
    cells: list[Cell] = []
    runs: list[RunSpec] = []
    for model, specs in by_model.items():
        for k, unnumbered in enumerate(specs, start=1):
            spec = dataclasses.replace(unnumbered, setting=k)
            key = setting_key(spec, keys)
            cells.append(Cell(spec.run_id, model, k, _label(spec, keys), spec, key))
            runs += [dataclasses.replace(spec, replicate=r,
                                         seed=grid_seed(protocol.seed + r, model, key))
                     for r in range(seeds)]
    return SweepPlan(protocol, seeds, grid, tuple(cells), tuple(runs))
