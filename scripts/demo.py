"""`make demo`: bring the whole platform up on this machine (see README)."""

import sys


def main() -> int:
    print(
        "demo: the platform's processes are not wired up yet; see issues in the tracker",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
