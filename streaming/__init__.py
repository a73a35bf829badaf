"""The streaming side: the Spark Structured Streaming job, Kafka wiring, the telemetry simulator."""
