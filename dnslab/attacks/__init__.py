"""The attacker node's tools, copied into its ``attacks/`` directory and run there by Debian's
python3 with dnspython (``python3 attacks/<tool>.py ...``), with the trainee's rights.

Each tool asks :mod:`scope` first: a target must be an address of a node of this very instance
(``scope.json``, written at ``up``); loopback, the host's, other private and public addresses,
names, anything else is refused with the reason. Each run is bounded in packets and seconds.
The guard is a seat belt against mistakes; the wall is the lab's network namespaces, which have
no route out: a tool the trainee rewrites still reaches nothing but her own lab.
"""
