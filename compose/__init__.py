"""Ways to run the whole stack: the Docker-free local stack (real Kafka from Maven Central jars,
nats-server from its wheel), the factory simulator, the `ofa-serving` CLI, and the Docker
Compose / Swarm files for real deployments."""
