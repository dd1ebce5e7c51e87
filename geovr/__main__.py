"""``python -m geovr`` = the ``geovr`` command."""

import sys

from geovr.cli.main import main

sys.exit(main())
