"""Flask Deploy Lab's controller: what runs on the machine that drives Ansible
and Locust (the catalogue of servers and endpoints, the bench, the report,
the faults)."""

from pathlib import Path

# The project's tree: the package is installed in editable mode from it, and
# reads the catalogue, the playbooks and the reports directory there.
PROJECT_DIR = Path(__file__).resolve().parents[2]
