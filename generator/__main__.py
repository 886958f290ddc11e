"""``python -m generator``: the same command as the gen-bundle script."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="gen-bundle")
