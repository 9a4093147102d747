"""MLproject entry point `main`: a thin wrapper around `mixscale main`."""

from mixscale.cli import main_cmd

if __name__ == "__main__":
    main_cmd(prog_name="main")
