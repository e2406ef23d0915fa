"""dtn-bridge: DTN flow files <-> signed CloudEvents on RabbitMQ."""

__version__ = "0.1.0"
