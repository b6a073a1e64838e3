"""The experiment trackers a run reports to (``tracking``) and the servers they need
(``servers``)."""
