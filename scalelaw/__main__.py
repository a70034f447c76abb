"""`python -m scalelaw`: the same entry point as the `scalelaw` console script."""

from scalelaw.cli import main

if __name__ == "__main__":
    main()
