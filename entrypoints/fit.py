"""MLproject entry point `fit`: a thin wrapper around `mixscale fit`."""

from mixscale.cli import fit_cmd

if __name__ == "__main__":
    fit_cmd(prog_name="fit")
