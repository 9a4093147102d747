"""MLproject entry point `plan`: a thin wrapper around `mixscale plan` (``--verify true``
also trains the planned counts ``--seeds`` times and logs the realised accuracy)."""

from mixscale.cli import entry_point, plan_cmd

if __name__ == "__main__":
    entry_point(plan_cmd, "plan")
