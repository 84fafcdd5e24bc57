"""python -m flask_deploy_lab.report reports/<run-id>: the same as fdl-report."""

import sys

from flask_deploy_lab.report.cli import main

sys.exit(main())
