"""Operator work as a library: what the `fedledger` commands for keys, members, tasks, node
configs and network files are made of, for scripts and the simulation to share.

    access    where a command's chain is and who signs; members and addresses as operators give them
    keys      new passwords, the scrypt work factor, finding keystores on disk
    tasks     the genesis model, the task plan, creating a task, a task's state and lineage
    configs   an organisation's node config as `fedledger init` writes it
    network   Besu QBFT genesis and every organisation's configs for a real consortium

Nothing here prints: functions return what happened and the warnings to show. Nothing depends
on sharing a filesystem or a loopback interface with another organisation: what crosses between
organisations is the deployment file, addresses and multiaddrs, handed over by the operators.
"""
