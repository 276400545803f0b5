"""The AURA-X job and command-line package (runs in the Batch image and on laptops)."""
