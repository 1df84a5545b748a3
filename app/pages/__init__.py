"""One module per page; each page's substate lives beside it. Routes: ``app/routes.py``."""
