import sys

from fesa.cli import main

sys.exit(main())
