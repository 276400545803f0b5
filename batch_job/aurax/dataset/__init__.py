"""Building the training set from MagnaTagATune, and reading it back."""
