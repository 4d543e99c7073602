"""The HTTP face of cairn: a REST API and an OpenAI-compatible API over the :class:`~cairn.assistant.Cairn` facade.

Importing this package builds nothing; :func:`cairn.server.app.create_app` makes an application.
"""
