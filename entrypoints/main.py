"""MLproject entry point `main`: a thin wrapper around `mixscale main`."""

from mixscale.cli import entry_point, main_cmd

if __name__ == "__main__":
    entry_point(main_cmd, "main")
