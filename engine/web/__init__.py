"""The web admin: the pages a small-business owner uses instead of the REST API (served at ``/``)."""
