"""``logstore ui``: a web console for a store (issue 18). :mod:`.console` is what it
shows (no web framework), :mod:`.sampler` its clock (produce rates, lag over time),
:mod:`.app` the JSON API and page (FastAPI and uvicorn: the ``ui`` extra), ``static/``
the page itself."""
