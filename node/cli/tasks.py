"""`fedledger task create|list|show`: federated training tasks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from fedledger.aggregation.registry import RULES

from .. import defaults
from ..errors import ContractRevert, InputError
from ..training.workloads import WORKLOADS
from .output import (
    EXIT_CODES_HELP,
    config_opt,
    deployment_opt,
    deprecated,
    devnet_opt,
    emit,
    json_opt,
    keystore_opt,
    password_opt,
    poa_opt,
    reflow,
    reporting,
    rpc_opt,
)

task_app = typer.Typer(help="Federated training tasks: create one (admin), list them, show one with its lineage.",
                       no_args_is_help=True, epilog=EXIT_CODES_HELP)


@task_app.command("create", epilog=EXIT_CODES_HELP)
@reflow
def task_create(
    workload: Optional[str] = typer.Option(None, "--workload", help="The workload whose model the members train: "
                                           f"built-in ({', '.join(WORKLOADS)}) or yours, MODULE:ATTRIBUTE. Alone: the "
                                           "genesis model is its initial weights for --seed."),
    workload_path: Optional[Path] = typer.Option(None, "--workload-path", help="Where your workload's module is "
                                                 "(default: the working directory)."),
    builtin: Optional[str] = typer.Option(None, "--builtin", hidden=True, help="Deprecated: --workload."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the workload's genesis model."),
    genesis: Optional[Path] = typer.Option(None, "--genesis", help="A safetensors file to start from instead. It is "
                                                                   "validated (dtypes, finite values, and the --workload "
                                                                   "model's names and shapes when given)."),
    rule: str = typer.Option(defaults.RULE, "--rule", help=f"Aggregation rule: {', '.join(RULES)}; or the preset "
                             "`robust` (FedAvg over the updates aligned with the round's consensus, outliers dropped "
                             "and clipped; docs/aggregation.md). The task stores the rule and every parameter."),
    rule_params: str = typer.Option("{}", "--rule-params", help='Rule parameters as JSON, e.g. \'{"beta": 0.1}\'.'),
    min_participants: Optional[int] = typer.Option(None, "--min-participants", min=1,
                                                   help="Updates a round needs before it may close at its deadline "
                                                        "(default: half the members, rounded up)."),
    max_participants: Optional[int] = typer.Option(None, "--max-participants", min=1,
                                                   help="A round closes at once with this many updates (default: the "
                                                        "number of members now)."),
    submission_window: int = typer.Option(defaults.SUBMISSION_WINDOW, "--submission-window", min=1,
                                          help="Seconds a round accepts updates."),
    aggregation_window: int = typer.Option(defaults.AGGREGATION_WINDOW, "--aggregation-window", min=1,
                                           help="Seconds the leader has to publish."),
    verification_window: int = typer.Option(defaults.VERIFICATION_WINDOW, "--verification-window", min=1,
                                            help="Seconds verifiers have to attest."),
    verifiers: int = typer.Option(defaults.VERIFIERS, "--verifiers", min=0, help="Verifiers per round; 0 trusts the "
                                  f"leader (at most {defaults.MAX_VERIFIERS}). A round needs at least verifiers + 1 "
                                  "participants."),
    quorum: Optional[int] = typer.Option(None, "--quorum", min=0, help="Agreements that finalize, a majority of the "
                                         "verifiers (default: the smallest majority; --verifiers N --quorum N asks for "
                                         "unanimity)."),
    rounds: int = typer.Option(defaults.ROUNDS, "--rounds", min=1, help="Rounds the task runs."),
    max_samples: int = typer.Option(defaults.MAX_SAMPLES, "--max-samples", min=1,
                                    help="The most training samples one update may claim (its weight); the chain "
                                         f"refuses more (at most {defaults.MAX_SAMPLES})."),
    reveal_window: int = typer.Option(defaults.REVEAL_WINDOW, "--reveal-window", min=1,
                                      help="Seconds the participants of round 1 (where nobody has a secret to open "
                                           "yet) have to reveal the secrets that seed its election; who does not "
                                           "reveal is left out of the round."),
    ipfs_api: Optional[str] = typer.Option(None, "--ipfs-api", help="YOUR IPFS node's RPC API: the genesis model and "
                                                                    "spec are added and pinned there (default: from "
                                                                    f"--config, else {defaults.IPFS_API})."),
    ipfs_repo: Optional[Path] = typer.Option(None, "--ipfs-repo", help="Take the API URL from this dev IPFS node's "
                                                                       "repo (`fedledger ipfs init --repo`)."),
    out: Path = typer.Option(Path("tasks"), "--out", help="Where the genesis model, its spec and task.json are kept "
                                                          "(OUT/taskID/)."),
    deployment: Optional[Path] = deployment_opt(), rpc: Optional[str] = rpc_opt(), poa: Optional[bool] = poa_opt(),
    config: Optional[Path] = config_opt(), keystore: Optional[Path] = keystore_opt(),
    password: Optional[str] = password_opt(), devnet: Optional[Path] = devnet_opt(),
    as_json: bool = json_opt(),
) -> None:
    """Create a task (admin only): build the genesis model, write it as OUT/taskID/genesis.safetensors,
    add it and its ModelSpec JSON to your IPFS node (pinned: keep that node up, the members fetch
    both from it), then createTask on chain, which opens round 1 at once.

    The members must run nodes whose workload builds the same model (a node whose model differs
    refuses to start and names the tensors); `fedledger init --task ID`
    points their node at the new task. The chain refuses (exit 4) a caller that is not the admin
    (NotAdmin) and inconsistent settings (InvalidArgument).

    Once the consortium is governed by its members (`fedledger govern`), any member runs this
    command: it proposes the task instead (files under OUT/proposalID/), and the task is created
    when the members' vote passes and executes it (`fedledger vote`, `fedledger execute`)."""
    if builtin is not None:
        deprecated("--builtin NAME", "--workload NAME")
        workload = builtin
    with reporting(as_json):
        from ..ops.access import chain_access, ipfs_api_of, members_of
        from ..ops.tasks import (TaskPlan, create_task, default_participants, genesis_weights, parse_rule_params,
                                 resolve_rule_option)
        from ..peer.config import NodeConfig
        from ..storage.ipfs import IpfsClient

        if workload is None and genesis is None:
            raise InputError("give --workload NAME (its initial model for --seed) or --genesis FILE.safetensors")
        rule, params = resolve_rule_option(rule, parse_rule_params(rule_params))
        tensors = genesis_weights(workload, seed, genesis, workload_path)
        cfg = NodeConfig.load(config) if config is not None else None
        acc = chain_access(deployment=deployment, rpc=rpc, poa=poa, config=config, keystore=keystore,
                           password=password, devnet=devnet, sign=True)
        from ..chain.governance import Governance

        gov = Governance.of(acc.client)
        if gov is not None and not acc.client.is_member(acc.client.sender):
            raise ContractRevert("NotMember", {"who": acc.client.sender}, "propose")
        if gov is None and acc.client.admin() != acc.client.sender:  # what the chain would answer, before anything is written
            raise ContractRevert("NotAdmin", {"who": acc.client.sender}, "createTask")
        n = sum(1 for m in members_of(acc.client, acc.deployment.block).values() if m["active"])
        min_p, max_p = default_participants(n, min_participants, max_participants, verifiers)
        plan = TaskPlan(rule=rule, rule_params=params, min_participants=min_p, max_participants=max_p,
                        submission_window=submission_window, aggregation_window=aggregation_window,
                        verification_window=verification_window, verifiers=verifiers, quorum=quorum, rounds=rounds,
                        max_samples=max_samples, reveal_window=reveal_window)
        plan.check()
        if n < min_p:
            raise InputError(f"the consortium has {n} member{'' if n == 1 else 's'} and a round needs {min_p} (its leader and "
                             f"{verifiers} verifiers at least): admit more members first, or give fewer --verifiers")
        ipfs = IpfsClient(ipfs_api_of(ipfs_api, ipfs_repo) or (cfg.ipfs.api_url if cfg else defaults.IPFS_API),
                          timeout=60)
        ipfs.id()  # unreachable: exit 3 before anything is written or sent
        task_dir = out / (f"proposal{gov.count()}" if gov else f"task{acc.client.task_count()}")
        if (task_dir / "task.json").exists():
            raise InputError(f"{task_dir} holds the record of an earlier task; choose another --out")
        propose = (lambda c: gov.propose("create-task", [c.to_tuple()], f"{workload or genesis}, seed {seed}")) if gov else None
        with ipfs:
            created = create_task(acc.client, ipfs, tensors, task_dir / "genesis.safetensors", plan,
                                  spec_path=task_dir / "model-spec.json", submit=propose)
        if gov is not None:
            (task_dir / "task.json").write_text(json.dumps(created.to_dict() | {"proposal": created.task, "task": None},
                                                           indent=2) + "\n")
            p = gov.proposal(created.task)
            emit(as_json, {"ok": True, "proposal": p.to_json(), "record": str(task_dir / "task.json")}, [
                f"proposal {p.id}: create a task (rule {created.config.rule_id}, {created.config.max_rounds} rounds); "
                f"genesis {created.config.genesis_sha256}",
                f"{p.yes} of {p.required} yes votes needed; members vote with `fedledger vote {p.id} yes`"])
            return
        if task_dir.name != f"task{created.task}":  # another task was created meanwhile
            final = out / f"task{created.task}"
            task_dir.rename(final)
            created.genesis_path = final / "genesis.safetensors"
            created.spec_path = final / "model-spec.json"
            task_dir = final
        record = created.to_dict() | {"contract": acc.deployment.address, "chain_id": acc.deployment.chain_id,
                                      "workload": workload, "seed": seed if genesis is None else None,
                                      "genesis_source": str(genesis) if genesis else None}
        (task_dir / "task.json").write_text(json.dumps(record, indent=2) + "\n")
        c = created.config
        emit(as_json, {"ok": True} | record, [
            f"task {created.task} created in block {created.block}: rule {c.rule_id}, {c.max_rounds} rounds, "
            f"{c.min_participants}-{c.max_participants} participants, {c.verifiers_per_round} verifiers (quorum {c.quorum})",
            f"genesis {c.genesis_sha256}  {c.genesis_cid}",
            f"model spec {c.model_spec_cid}",
            f"record: {task_dir / 'task.json'}",
            f"next: members run `fedledger init ORG --task {created.task} --workload {workload or 'NAME'} ...` and "
            "`fedledger node run`",
        ])


@task_app.command("list", epilog=EXIT_CODES_HELP)
@reflow
def task_list(
    deployment: Optional[Path] = deployment_opt(), rpc: Optional[str] = rpc_opt(), poa: Optional[bool] = poa_opt(),
    config: Optional[Path] = config_opt(), as_json: bool = json_opt(),
) -> None:
    """List every task: rule, rounds, the current round and its phase, or completed. Needs no key."""
    with reporting(as_json):
        from ..ops.access import chain_access, members_of
        from ..ops.tasks import task_summary

        acc = chain_access(deployment=deployment, rpc=rpc, poa=poa, config=config)
        members = members_of(acc.client, acc.deployment.block)
        tasks = [task_summary(acc.client, t, members) for t in range(acc.client.task_count())]
        lines = []
        for t in tasks:
            if t["completed"]:
                lines.append(f"task {t['task']} [{t['rule']}] completed after {t['round']} rounds, "
                             f"final model {t['global_sha256'][:16]}")
            else:
                lines.append(f"task {t['task']} [{t['rule']}] round {t['round']}/{t['rounds']} {t['phase']}, "
                             f"{t['updates']} updates" + (f", leader {t['leader']}" if t.get("leader") else ""))
        emit(as_json, {"ok": True, "tasks": tasks}, lines or ["no tasks yet"])


@task_app.command("show", epilog=EXIT_CODES_HELP)
@reflow
def task_show(
    task: int = typer.Argument(..., min=0, help="The task id."),
    deployment: Optional[Path] = deployment_opt(), rpc: Optional[str] = rpc_opt(), poa: Optional[bool] = poa_opt(),
    config: Optional[Path] = config_opt(), as_json: bool = json_opt(),
) -> None:
    """Show one task: its settings, where the round stands, and its lineage: every finalized
    round's global model (cid, sha256, parent) with its leader and the updates it was built from,
    read from the chain's event log. A task id the chain does not have is wrong input (exit 1)."""
    with reporting(as_json):
        from ..ops.access import chain_access, members_of
        from ..ops.tasks import privacy_summary, task_config_dict, task_lineage, task_summary

        acc = chain_access(deployment=deployment, rpc=rpc, poa=poa, config=config)
        client = acc.client
        client.require_task(task)
        members = members_of(client, acc.deployment.block)
        summary = task_summary(client, task, members)
        cfg = client.task_config(task)
        config_out = task_config_dict(cfg)
        created, rounds = task_lineage(client, task, acc.deployment.block, members)
        privacy = privacy_summary(client, task, cfg, acc.deployment.block, members)
        data = {"ok": True, **summary, "config": config_out, "created": created, "lineage": rounds,
                "privacy": privacy}
        lines = [f"task {task}: rule {cfg.rule_id} {json.dumps(config_out['rule_params'])}, {cfg.max_rounds} rounds, "
                 f"{cfg.min_participants}-{cfg.max_participants} participants, {cfg.verifiers_per_round} verifiers "
                 f"(quorum {cfg.quorum}), windows {cfg.submission_window}/{cfg.aggregation_window}/"
                 f"{cfg.verification_window} s",
                 f"genesis {cfg.genesis_sha256}  {cfg.genesis_cid}  spec {cfg.model_spec_cid}"]
        if privacy:
            spent = ", ".join(f"{m} {v['epsilon']:.3f} ({v['updates']} updates)" for m, v in privacy["members"].items())
            lines.append(f"privacy: {privacy['level']}-level DP, clip {privacy['clip']:g}, noise multiplier "
                         f"{privacy['noise_multiplier']:g}, delta {privacy['delta']:g}, budget "
                         + (f"epsilon {privacy['budget']:g} ({privacy['rounds_within_budget']} rounds)"
                            if privacy["budget"] else "none")
                         + f"; epsilon spent: {spent or 'nothing yet'}")
        if summary["completed"]:
            lines.append(f"completed after {summary['round']} rounds")
        else:
            lines.append(f"round {summary['round']}: {summary['phase']}, {summary['updates']} updates"
                         + (f", leader {summary['leader']} (attempt {summary['attempt']})" if summary.get("leader") else ""))
        for r in rounds:
            lines.append(f"round {r['round']}: {r['sha256'][:16]} <- {r['parent'][:16]}  leader {r['leader']}, "
                         f"{len(r['updates'])} updates ({', '.join(u['member'] for u in r['updates'])})")
        emit(as_json, data, lines)


@task_app.command("pull", epilog=EXIT_CODES_HELP)
@reflow
def task_pull(
    task: int = typer.Argument(..., min=0, help="The task id."),
    out: Path = typer.Option(..., "--out", help="Where to write the model (safetensors)."),
    round_: Optional[int] = typer.Option(None, "--round", min=0, help="Whose global model: a finalized round, 0 for "
                                         "the genesis (default: the latest)."),
    ipfs_api: Optional[str] = typer.Option(None, "--ipfs-api", help="Your IPFS node's RPC API (default: from --config, "
                                                                    f"else {defaults.IPFS_API})."),
    ipfs_repo: Optional[Path] = typer.Option(None, "--ipfs-repo", help="Take the API URL from this dev IPFS node's "
                                                                       "repo."),
    deployment: Optional[Path] = deployment_opt(), rpc: Optional[str] = rpc_opt(), poa: Optional[bool] = poa_opt(),
    config: Optional[Path] = config_opt(), as_json: bool = json_opt(),
) -> None:
    """Fetch a task's global model through your IPFS node and write it to --out, only if its
    sha256 is the one the chain recorded (exit 5 otherwise, nothing written). Needs no key."""
    with reporting(as_json):
        from ..ops.access import chain_access, ipfs_api_of
        from ..ops.tasks import pull_model
        from ..peer.config import NodeConfig
        from ..storage.ipfs import IpfsClient

        cfg = NodeConfig.load(config) if config is not None else None
        acc = chain_access(deployment=deployment, rpc=rpc, poa=poa, config=config)
        api = ipfs_api_of(ipfs_api, ipfs_repo) or (cfg.ipfs.api_url if cfg else defaults.IPFS_API)
        with IpfsClient(api, timeout=60) as ipfs:
            got = pull_model(acc.client, ipfs, task, out, round_, from_block=acc.deployment.block)
        emit(as_json, {"ok": True, **got},
             [f"wrote {got['file']}: task {task} round {got['round']} global model, {got['bytes']:,} bytes, sha256 "
              f"{got['sha256']} (as the chain recorded)"])


def register(app: typer.Typer) -> None:
    app.add_typer(task_app, name="task")
