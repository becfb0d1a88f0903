"""`python -m onebyone <stage> ...`: the same command line as the `onebyone` console script."""

import sys

from onebyone.runtime.commands.main import main

sys.exit(main())
