"""`fedledger audit`: rebuild a task's lineage from contract events alone and verify it byte for byte.

It proceeds in three steps, each of which can name the first broken link:

1. Events (`replay`). Every lineage fact comes from FedLedger's event log; the events are checked
   against each other the way the contract should have produced them (parent links, the inputs
   digest, the election seed and order, publication, attestations, quorum, completion).
2. Blobs (`blobs`, `verify`). The genesis model, every update and every global model is fetched
   from IPFS and its sha256 compared with the chain's; global models are parsed and their
   metadata compared with the chain's.
3. Recomputation (`verify`). Each round's aggregate is rebuilt from its updates by the code the
   leader and the verifiers run (`peer.recompute.build_aggregate`) and compared with the global
   model: bit for bit, or within the rule's tolerance.

`run` holds the entry points (`audit_run`, `audit_live`, `run_audit`), `model` the result types,
`render` the table, ancestry and export, `html` the lineage page. docs/audit.md documents the
lineage JSON and every failure kind.
"""

import importlib

_EXPORTS = {
    "audit_run": ".run", "audit_live": ".run", "run_audit": ".run", "AuditResult": ".model", "Failure": ".model",
    "rebuild_lineage": ".replay", "LiveIpfs": ".blobs", "RunIpfs": ".blobs", "export": ".render",
    "print_report": ".render", "AuditError": "..errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
