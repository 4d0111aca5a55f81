"""The generic modules (training, checkpoints, data format, rollouts, statistics, export, the registry) never
name a built-in env: no import of an env module and no string that is a built-in env's id. What differs by env
reaches them through the registries and the env family protocol, so a plugin env is served the same way. The
``gym`` family is not one env but the adapter for every gymnasium id; the data formats that name gymnasium envs
(Minari, robomimic) use it."""

from __future__ import annotations

import ast
from pathlib import Path

import clonekit
from clonekit.envs import ENVS

SRC = Path(clonekit.__file__).parent
GENERIC = [
    "train.py",
    "checkpoint.py",
    "export.py",
    "io.py",
    "registry.py",
    "distributed.py",
    "progress.py",
    "seeding.py",
    "config.py",
    "data",
    "evaluation/rollout.py",
    "evaluation/stats.py",
    "policies/base.py",
]
ENV_MODULES = {p.stem for p in (SRC / "envs").glob("*.py")} - {"__init__", "family", "gym"}


def _files() -> list[Path]:
    files: list[Path] = []
    for entry in GENERIC:
        path = SRC / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def test_generic_modules_never_name_a_built_in_env() -> None:
    builtin = set(ENVS) - {"gym"}
    assert {"maze", "babyai", "avoiding"} <= builtin and {"maze", "babyai", "avoiding"} <= ENV_MODULES
    files = _files()
    assert len(files) >= len(GENERIC) and all(f.exists() for f in files)
    found = []
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                named = parts[2:3] if parts[:2] == ["clonekit", "envs"] else []
                if parts == ["clonekit", "envs"]:
                    named = [alias.name for alias in node.names]
                found += [f"{file.relative_to(SRC)}:{node.lineno} imports {n}" for n in named if n in ENV_MODULES]
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    if parts[:2] == ["clonekit", "envs"] and parts[2:3] and parts[2] in ENV_MODULES:
                        found.append(f"{file.relative_to(SRC)}:{node.lineno} imports {alias.name}")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in builtin:
                found.append(f"{file.relative_to(SRC)}:{node.lineno} names {node.value!r}")
    assert not found, found
