"""``python -m distilir.training train --config FILE.yaml [...]``: the `distilir train` command on its own."""

import sys

from distilir.training.cli import main

sys.exit(main())
