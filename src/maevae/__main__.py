"""``python -m maevae`` (and ``torchrun -m maevae``) runs the command line."""

from maevae.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    main()
