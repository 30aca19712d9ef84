"""`fedledger member add|fund|remove|list`: the consortium's members."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from .output import (
    EXIT_CODES_HELP,
    config_opt,
    deployment_opt,
    devnet_opt,
    emit,
    json_opt,
    keystore_opt,
    password_opt,
    poa_opt,
    reflow,
    reporting,
    rpc_opt,
    warn,
)

member_app = typer.Typer(help="The consortium's members. Adding and removing are the admin's; anyone can list.",
                         no_args_is_help=True, epilog=EXIT_CODES_HELP)


@member_app.command("add", epilog=EXIT_CODES_HELP)
@reflow
def member_add(
    member: str = typer.Argument(..., help="The member's address (0x...), or its keystore file (read without decrypting)."),
    name: str = typer.Option(..., "--name", help="The organisation's name, 1-64 bytes, shown in lineage and reports."),
    fund: float = typer.Option(0.0, "--fund", help="Also send this much ether from the admin for gas (chains that "
                                                   "charge gas, such as the devnet; free-gas Besu needs none)."),
    deployment: Optional[Path] = deployment_opt(), rpc: Optional[str] = rpc_opt(), poa: Optional[bool] = poa_opt(),
    config: Optional[Path] = config_opt(), keystore: Optional[Path] = keystore_opt(),
    password: Optional[str] = password_opt(), devnet: Optional[Path] = devnet_opt(),
    as_json: bool = json_opt(),
) -> None:
    """Admit an organisation: addMember(address, name), signed with the admin's key.

    The chain refuses (exit 4) a caller that is not the admin (NotAdmin), an address that is
    already a member (AlreadyMember), a name another address was admitted under (NameTaken: a name
    names one organisation for good) and an empty or too long name (InvalidArgument)."""
    with reporting(as_json):
        from ..ops.access import chain_access, ether_to_wei, parse_address

        address = parse_address(member)
        wei = ether_to_wei(fund)
        acc = chain_access(deployment=deployment, rpc=rpc, poa=poa, config=config, keystore=keystore,
                           password=password, devnet=devnet, sign=True)
        tx = acc.client.add_member(address, name)
        data: dict[str, Any] = {"ok": True, "member": address, "name": name, "tx_hash": tx.tx_hash,
                                "block": tx.block_number, "gas_used": tx.gas_used, "funded_wei": 0}
        lines = [f"admitted {name} ({address}) in block {tx.block_number}"]
        if wei:
            data["fund_tx_hash"] = acc.client.send_ether(address, wei)
            data["funded_wei"] = wei
            lines.append(f"sent {fund:g} ether to {address} for gas")
        else:
            price = acc.client.gas_price()
            if price > 0 and acc.client.balance(address) == 0:
                warn(f"{address} holds no ether and this chain charges gas ({price} wei per gas): its node cannot "
                     "send transactions. Fund it (`fedledger member fund`), or run a free-gas chain (docs/deploy.md)")
        emit(as_json, data, lines)


@member_app.command("fund", epilog=EXIT_CODES_HELP)
@reflow
def member_fund(
    member: str = typer.Argument(..., help="The address (0x...) or keystore file to send ether to."),
    ether: float = typer.Option(..., "--ether", help="How much ether to send."),
    deployment: Optional[Path] = deployment_opt(), rpc: Optional[str] = rpc_opt(), poa: Optional[bool] = poa_opt(),
    config: Optional[Path] = config_opt(), keystore: Optional[Path] = keystore_opt(),
    password: Optional[str] = password_opt(), devnet: Optional[Path] = devnet_opt(),
    as_json: bool = json_opt(),
) -> None:
    """Send ether for gas to a member (from the admin, or any account whose keystore you give).
    Only chains that charge gas need this, such as the devnet; a free-gas Besu network
    (docs/deploy.md) does not. The node rejects the transfer (exit 4) if the sender cannot pay."""
    with reporting(as_json):
        from ..ops.access import chain_access, ether_to_wei, parse_address

        address = parse_address(member)
        wei = ether_to_wei(ether)
        acc = chain_access(deployment=deployment, rpc=rpc, poa=poa, config=config, keystore=keystore,
                           password=password, devnet=devnet, sign=True)
        tx_hash = acc.client.send_ether(address, wei)
        balance = acc.client.balance(address)
        emit(as_json, {"ok": True, "member": address, "wei": wei, "tx_hash": tx_hash, "balance_wei": balance},
             [f"sent {ether:g} ether to {address}; it now holds {balance / 10**18:g} ether"])


@member_app.command("remove", epilog=EXIT_CODES_HELP)
@reflow
def member_remove(
    member: str = typer.Argument(..., help="The member's address (0x...) or its keystore file."),
    deployment: Optional[Path] = deployment_opt(), rpc: Optional[str] = rpc_opt(), poa: Optional[bool] = poa_opt(),
    config: Optional[Path] = config_opt(), keystore: Optional[Path] = keystore_opt(),
    password: Optional[str] = password_opt(), devnet: Optional[Path] = devnet_opt(),
    as_json: bool = json_opt(),
) -> None:
    """Remove a member: removeMember(address), signed with the admin's key. Its past updates stay
    in the lineage; from now on the chain refuses its submissions (NotMember). Refused with
    NotMember when the address is not a member, NotAdmin when you are not the admin."""
    with reporting(as_json):
        from ..ops.access import chain_access, parse_address

        address = parse_address(member)
        acc = chain_access(deployment=deployment, rpc=rpc, poa=poa, config=config, keystore=keystore,
                           password=password, devnet=devnet, sign=True)
        tx = acc.client.remove_member(address)
        emit(as_json, {"ok": True, "member": address, "tx_hash": tx.tx_hash, "block": tx.block_number},
             [f"removed {address} in block {tx.block_number}"])


@member_app.command("list", epilog=EXIT_CODES_HELP)
@reflow
def member_list(
    all_: bool = typer.Option(False, "--all", help="Also list removed members."),
    deployment: Optional[Path] = deployment_opt(), rpc: Optional[str] = rpc_opt(), poa: Optional[bool] = poa_opt(),
    config: Optional[Path] = config_opt(), as_json: bool = json_opt(),
) -> None:
    """List the members, from the chain's event log since the deployment block: address, name,
    and whether each is still a member. Needs no key."""
    with reporting(as_json):
        from ..ops.access import chain_access, members_of

        acc = chain_access(deployment=deployment, rpc=rpc, poa=poa, config=config)
        members = [m for m in members_of(acc.client, acc.deployment.block).values() if all_ or m["active"]]
        admin = acc.client.admin()
        lines = [f"admin {admin}"] + [f"{m['address']}  {m['name']}" + ("" if m["active"] else "  (removed)")
                                      for m in members]
        emit(as_json, {"ok": True, "admin": admin, "contract": acc.deployment.address,
                       "chain_id": acc.deployment.chain_id, "members": members}, lines)


def register(app: typer.Typer) -> None:
    app.add_typer(member_app, name="member")
