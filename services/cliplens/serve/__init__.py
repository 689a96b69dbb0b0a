"""The served product: one Ray Serve application behind a gRPC ingress (see ``deploy/README.md``).

``cliplens.serve.app:build_app`` builds it from the ``args`` of a Serve config file.
"""
