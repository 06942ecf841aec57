"""Floor 5: what runs steps in order: task bodies, file ingestion and staging, Airflow secrets.

The privacy primitives below (``privacy/``) know nothing of Airflow, process pools or
reports; this floor wires them together for the DAGs and the CLI above it.
"""
