"""MLproject entry point `tune`: a thin wrapper around `mixscale tune`."""

from mixscale.cli import tune_cmd

if __name__ == "__main__":
    tune_cmd(prog_name="tune")
