import sys

from fesa.cli import main

if __name__ == "__main__":  # fesa run's stage commands fork from a server that imports the main module again
    sys.exit(main())
