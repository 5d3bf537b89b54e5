"""Training and evaluation of the project's nucleus model (see README, "The nucleus model")."""
