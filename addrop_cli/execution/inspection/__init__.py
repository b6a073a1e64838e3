"""Reading a results folder: ``addrop status`` (``status``), predictions from a run's checkpoint
(``predict``, ``predict_text``) and ``addrop export`` to trackers (``export``)."""
