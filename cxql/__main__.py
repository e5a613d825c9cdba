"""``python -m cxql``: the same as the ``cxql`` command."""

import sys

from ._entry import main

sys.exit(main())
