"""python -m flask_deploy_lab.faults: the same as fdl-faults."""

import sys

from flask_deploy_lab.faults.cli import main

sys.exit(main())
