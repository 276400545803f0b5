"""What the user CLI does against a deployed stack (`aurax start/status/report/estimate`), kept apart from
argument parsing so that `aurax local` drives its emulated stack through the very same code."""
