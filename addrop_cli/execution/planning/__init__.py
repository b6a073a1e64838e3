"""``addrop run``: the preflight (``preflight``), then the run matrix, the store and a back-end
(``runner``)."""
