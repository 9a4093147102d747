"""MLproject entry point `design`: a thin wrapper around `mixscale design`."""

from mixscale.cli import design_cmd, entry_point

if __name__ == "__main__":
    entry_point(design_cmd, "design")
