"""Generated protobuf and gRPC stubs of the ``cliplens.v1`` API (``clients/python/generate_stubs.py``)."""
