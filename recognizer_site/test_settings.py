"""The test suite's settings: the local defaults, with DEBUG on as `make run` has it.

Set in the environment, not here, so that the servers and workers tests start
inherit it; a test of the production configuration sets DEBUG=0 itself.
"""

import os

os.environ.setdefault("DEBUG", "1")

from .settings import *  # noqa: F403
