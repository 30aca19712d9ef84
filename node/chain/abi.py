"""Values of the contract's ABI in plain Python: event and error arguments (bytes as lowercase
hex, rule ids as text, structs as dicts) and canonical type strings for selectors and topics."""

from __future__ import annotations

from typing import Any, Mapping

from ..protocol.types import rule_from_bytes32


def plain(name: str, value: Any) -> Any:
    """Event/error values in plain Python: bytes32 as hex, rule ids as text, structs as dicts."""
    if isinstance(value, (bytes, bytearray)):
        if name == "ruleId":
            return rule_from_bytes32(value)
        return bytes(value).hex()
    if isinstance(value, Mapping):  # structs in events come back as (nested) AttributeDicts
        return {k: plain(k, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(name, v) for v in value]
    return value


def abi_type(item: dict) -> str:
    t = item["type"]
    if t.startswith("tuple"):
        return "(" + ",".join(abi_type(c) for c in item["components"]) + ")" + t[len("tuple"):]
    return t
