"""Compiled contracts (ABI + bytecode) for the on-chain venue and its test chain.

`MiniRouter` and `MiniPair` are a minimal constant-product exchange with Uniswap V2's router and
pair interface; the venue uses only their ABIs, which match Uniswap V2's for every function and
event it calls, so it talks to a real UniswapV2Router02 as well. `TestToken` and `WETH9` exist for
the test chain. The `.sol` sources sit beside the `.json` artifacts; `build.sh` recompiles them.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

NAMES = ("MiniPair", "MiniRouter", "TestToken", "WETH9")


@cache
def artifact(name: str) -> dict[str, Any]:
    """The compiled artifact of contract `name`: {"contractName", "abi", "bytecode", ...}."""
    if name not in NAMES:
        raise ValueError(f"no compiled contract {name!r}: expected one of {', '.join(NAMES)}")
    text = resources.files(__package__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def abi(name: str) -> list[dict[str, Any]]:
    """The ABI of contract `name`."""
    loaded: list[dict[str, Any]] = artifact(name)["abi"]
    return loaded
