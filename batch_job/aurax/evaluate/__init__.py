"""`aurax job evaluate`: treatment (the fine-tuned checkpoint) against control (the untouched base model) on
the same prompts and seeds, scored by the AURA-X score, with the statistics and report the decision reads."""
