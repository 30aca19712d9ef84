"""Compiling contracts/ with the pinned solc, and the build artifact the node deploys and calls.

The artifacts (ABI + bytecode) ship inside the package (`node/chain/artifacts/FedLedger.json`, and
`MemberVote.json` for the members' vote) so a member can run a node without Node.js. In a checkout, `build_artifact()` recompiles through
py-solc-x and the npm `solc` package (the only offline compiler on these machines) and the
test suite checks that the shipped artifact matches a fresh compile byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FedledgerError

SOLC_VERSION = "0.8.30"
EVM_VERSION = "cancun"
MAIN_CONTRACT = "FedLedger"
GOVERNANCE_CONTRACT = "MemberVote"
CONTRACTS = (MAIN_CONTRACT, GOVERNANCE_CONTRACT)

PACKAGE_DIR = Path(__file__).resolve().parent
ARTIFACT_PATH = PACKAGE_DIR / "artifacts" / f"{MAIN_CONTRACT}.json"
_IMPORT = re.compile(r'^import\s+\{[^}]*\}\s+from\s+"([^"]+)";', re.M)


def artifact_path(name: str = MAIN_CONTRACT) -> Path:
    return PACKAGE_DIR / "artifacts" / f"{name}.json"


def repo_root() -> Path | None:
    """The checkout this package runs from, when it runs from one (editable install)."""
    root = PACKAGE_DIR.parent.parent
    return root if (root / "contracts" / f"{MAIN_CONTRACT}.sol").exists() else None


class CompileError(FedledgerError):
    """solc refused the sources; the message carries its formatted errors."""


@dataclass(frozen=True)
class Artifact:
    contract: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str
    solc_version: str
    evm_version: str
    source_sha256: str

    @property
    def abi_sha256(self) -> str:
        """Hash of the canonical ABI JSON: deployment files record it so clients can detect drift."""
        canon = json.dumps(self.abi, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(canon).hexdigest()

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Artifact":
        return cls(**json.loads(text))


def standard_json_input(root: Path) -> dict[str, Any]:
    """The solc standard-JSON input for every file in contracts/ and the OpenZeppelin files they
    import (from node_modules, under the source names Hardhat gives them), with Hardhat's settings."""
    sources: dict[str, dict[str, str]] = {}
    todo = [f"contracts/{path.name}" for path in sorted((root / "contracts").glob("*.sol"))]
    while todo:
        name = todo.pop()
        if name in sources:
            continue
        path = root / name if name.startswith("contracts/") else root / "node_modules" / name
        if not path.exists():
            raise CompileError(f"{name} is missing: run `make setup` (npm install) first")
        text = path.read_text()
        sources[name] = {"content": text}
        for imported in _IMPORT.findall(text):
            if imported.startswith("."):
                imported = os.path.normpath(os.path.join(os.path.dirname(name), imported))
            todo.append(imported)
    sources = dict(sorted(sources.items()))
    return {
        "language": "Solidity",
        "sources": sources,
        "settings": {
            "optimizer": {"enabled": True, "runs": 200},
            "evmVersion": EVM_VERSION,
            "outputSelection": {
                "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}
            },
        },
    }


def solc_shim(root: Path) -> Path:
    """`scripts/solc`: a solc-compatible CLI over the npm package, for py-solc-x."""
    shim = root / "scripts" / "solc"
    if not (root / "node_modules" / "solc").is_dir():
        raise CompileError("the npm `solc` package is missing: run `make setup` (npm install) first")
    return shim


def compile_sources(root: Path) -> Artifact:
    """FedLedger's artifact, compiled from contracts/."""
    return compile_all(root)[MAIN_CONTRACT]


def compile_all(root: Path) -> dict[str, Artifact]:
    """Compile contracts/ in one solc call (each call costs 1-3 s of Node start and wasm load)."""
    import solcx  # only needed to build, not to run a node

    std_input = standard_json_input(root)
    source_sha = hashlib.sha256(json.dumps(std_input, sort_keys=True).encode()).hexdigest()
    try:
        out = solcx.compile_standard(
            std_input,
            solc_binary=str(solc_shim(root)),
            base_path=str(root),
            allow_paths=[str(root)],
        )
    except solcx.exceptions.SolcError as exc:
        # The exception text embeds solc's whole JSON output; keep only the diagnostics.
        try:
            diagnostics = json.loads(exc.stdout_data).get("errors", [])
            message = "\n".join(e.get("formattedMessage", "") for e in diagnostics if e.get("severity") == "error")
        except (TypeError, ValueError):
            message = exc.message
        raise CompileError(message or exc.message) from None
    errors = [e for e in out.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError("\n".join(e.get("formattedMessage", e.get("message", "")) for e in errors))
    built = {}
    names = [*CONTRACTS, *(f"I{n}" for n in CONTRACTS if f"contracts/I{n}.sol" in out["contracts"])]
    for name in names:
        unit = out["contracts"][f"contracts/{name}.sol"][name]
        built[name] = Artifact(
            contract=name,
            abi=unit["abi"],
            bytecode="0x" + unit["evm"]["bytecode"]["object"],
            deployed_bytecode="0x" + unit["evm"]["deployedBytecode"]["object"],
            solc_version=SOLC_VERSION,
            evm_version=EVM_VERSION,
            source_sha256=source_sha,
        )
    return built


def build_artifact(write: bool = True) -> Artifact:
    """Compile from the checkout and (by default) refresh the shipped artifact."""
    root = repo_root()
    if root is None:
        raise CompileError("no contracts/ directory beside this package: compiling needs a checkout")
    built = compile_all(root)
    if write:
        stale = False
        for name in CONTRACTS:  # the interfaces follow the ABIs; they change no contract's bytecode
            path = root / "contracts" / f"I{name}.sol"
            text = solidity_interface(built[name])
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
                stale = True
        built = compile_all(root) if stale else built
        ARTIFACT_PATH.parent.mkdir(parents=True, exist_ok=True)
        for name in CONTRACTS:
            artifact_path(name).write_text(built[name].to_json())
    return built[MAIN_CONTRACT]


def source_sha256(root: Path) -> str:
    return hashlib.sha256(json.dumps(standard_json_input(root), sort_keys=True).encode()).hexdigest()


def load_artifact(name: str = MAIN_CONTRACT) -> Artifact:
    """The artifact to deploy and call. In a checkout whose contracts changed since the shipped
    artifact was built, recompile first (unless FEDLEDGER_NO_COMPILE is set)."""
    root = repo_root()
    path = artifact_path(name)
    if path.exists():
        artifact = Artifact.from_json(path.read_text())
        if root is None or os.environ.get("FEDLEDGER_NO_COMPILE"):
            return artifact
        if artifact.source_sha256 == source_sha256(root):
            return artifact
    build_artifact(write=True)
    return Artifact.from_json(path.read_text())


# ------------------------------------------------------------------ interfaces

#: Enums travel as uint8 in the ABI, which does not name their members: the interface says them.
ENUMS = {
    "Phase": "None, Submission, Reveal, Aggregation, Verification, Finalized",
    "FailReason": "LeaderTimeout, Rejected, Unverified, Disputed",
    "State": "None, Active, Passed, Executed, Defeated, Expired",
}


def solidity_interface(artifact: Artifact) -> str:
    """`contracts/I<Name>.sol`: every function, event and error of the compiled contract as a
    Solidity interface, so a third party can call and decode it (Foundry's cast, another
    language's ABI tooling) without our Python. Generated from the ABI; the tests check the file."""
    structs: dict[str, list[dict[str, Any]]] = {}

    def typ(item: dict[str, Any], location: str) -> str:
        t, internal = item["type"], item.get("internalType", item["type"])
        if t.startswith("tuple"):
            name = internal.split()[-1].split(".")[-1]
            base = name[: name.index("[")] if "[" in name else name
            structs[base] = item["components"]
            t = base + t[len("tuple"):]
        elif internal.startswith("enum "):
            t = "uint8"
        needs = t.endswith("]") or t in ("string", "bytes") or t.split("[")[0] in structs
        return f"{t} {location}" if needs and location else t

    def params(items: list[dict[str, Any]], location: str = "", event: bool = False) -> str:
        out = []
        for i in items:
            comment = ""
            internal = i.get("internalType", "")
            if internal.startswith("enum "):
                comment = f" /* {internal.split('.')[-1]} */"
            words = [typ(i, location) + comment] + (["indexed"] if event and i.get("indexed") else [])
            out.append(" ".join(words + ([i["name"]] if i.get("name") else [])))
        return ", ".join(out)

    lines: list[str] = []
    order = {"event": 0, "error": 1, "function": 2}
    for item in sorted((i for i in artifact.abi if i["type"] in order), key=lambda i: (order[i["type"]], i["name"])):
        if item["type"] == "event":
            lines.append(f"    event {item['name']}({params(item['inputs'], event=True)});")
        elif item["type"] == "error":
            lines.append(f"    error {item['name']}({params(item['inputs'])});")
        else:
            mut = item["stateMutability"]
            head = f"    function {item['name']}({params(item['inputs'], 'calldata')}) external"
            head += "" if mut == "nonpayable" else f" {mut}"
            if item["outputs"]:
                head += f" returns ({params(item['outputs'], 'memory')})"
            lines.append(head + ";")
    struct_lines = []
    for name, comps in sorted(structs.items()):
        struct_lines.append(f"    struct {name} {{")
        struct_lines += [f"        {typ(c, '')} {c['name']};" for c in comps]
        struct_lines.append("    }")
    enums = [f"///      {name}: {members} (0, 1, ...)" for name, members in ENUMS.items()
             if f"enum {artifact.contract}.{name}" in json.dumps(artifact.abi)]
    return "\n".join([
        "// SPDX-License-Identifier: Apache-2.0",
        "pragma solidity ^0.8.20;",
        "",
        f"/// @title I{artifact.contract}",
        f"/// @notice Every function, event and error of {artifact.contract} (contracts/{artifact.contract}.sol, which",
        "///         documents each one), for clients in any language. Generated from the compiled ABI by",
        "///         `make compile`; the tests check it matches. docs/protocol.md is the normative text.",
        *(["/// @dev Enums travel as uint8; their members, in order:"] + enums if enums else []),
        f"interface I{artifact.contract} {{",
        *struct_lines,
        *lines,
        "}",
        "",
    ])
