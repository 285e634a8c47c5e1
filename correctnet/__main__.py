"""Allow ``python -m correctnet``."""

import sys

from correctnet.cli import main

sys.exit(main())
