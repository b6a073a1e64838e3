"""A sweep's parts: its plan (``plan``), a tpe/cmaes search (``search``, ``study``, ``proposals``),
the selection of its winners (``selection``) and its summary (``summary``)."""
