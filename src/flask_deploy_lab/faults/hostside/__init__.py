"""What the faults run on a host: small programs that Ansible's ``script`` module
copies to the host and runs there with its ``python3`` (flask_deploy_lab.faults.
executor), one round trip each, for what needs sub-second timing on the host
itself (a probe 10 times a second, a kill and the wait for its replacement).

Each is standard library only, imports nothing from this package, bounds its own
run in time and count (so nothing outlives a broken controller for long), and
prints one JSON object, or one line per answer, on stdout. ``--at`` (a Unix time)
lets the controller start one early and still have it act at a chosen moment,
whatever Ansible's round trip took.
"""
