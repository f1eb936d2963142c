"""Train: turn feedback into remedies for the next version and lessons for every monitor."""
