"""The API's routers, one small module per area; :func:`cairn.server.app.create_app` mounts them."""
