"""Deploy a Fogmarket federation with EnosLib.

One code path, two providers: Grid'5000 (``en.G5k`` or ``en.VMonG5k``) and this machine, where
every host is a Linux network namespace with its own ``sshd`` (``en.Static``). The steps that
install, start, run, collect and tear down are the same for both (``deploy``); only the
provider that hands out the hosts differs (``providers``).

- ``topology``: topology files (the format of ``testbed/topologies/*.toml``) and the pairwise
  link constraints they imply.
- ``plan``: which host runs what (roles), the ports and paths on every host.
- ``services``: a service as a systemd unit, or as a plain process where there is no systemd.
- ``deploy``: the steps, through EnosLib/Ansible.
- ``netns``: the local hosts (namespaces, bridge, sshd) and their guaranteed cleanup.
- ``providers``: Grid'5000 and local host provisioning.
- ``openfaas``: k3s and OpenFaaS on every fog node (``--backend openfaas``).
- ``cli``: ``fogmarket-enos g5k|local|destroy|links``.
"""
