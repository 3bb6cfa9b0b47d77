"""The web interface: server-rendered pages for citizens, members, the office manager and admins.

Views parse forms (``forms.py``), call the domains' services (the rules live there) and commit;
templates are in ``node/templates``, styles and small scripts in ``node/static``."""
