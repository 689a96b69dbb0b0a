"""Light client for the cliplens gRPC API: grpcio, protobuf and numpy only."""

__version__ = "0.1.0"
