"""MLproject entry point `design`: a thin wrapper around `mixscale design`."""

from mixscale.cli import design_cmd

if __name__ == "__main__":
    design_cmd(prog_name="design")
