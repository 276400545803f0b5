"""Audio analysis: the log-drum detector, the AURA-X cultural score, their validation suite and the signals
it synthesises, and audio file reading."""
