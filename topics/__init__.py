"""The event contract: topic registry, versioned event models, the envelope and its wire format.

Everything that crosses Kafka is defined here, so producers and consumers in any language can
read `cryptiq topics schema NAME` and agree on bytes.
"""
