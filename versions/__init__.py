"""Configuration as versioned data: the whole configuration as one document (backup and
restore), a version with its diff for every change, and rollback to any version."""
