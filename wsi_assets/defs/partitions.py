"""The `slides` partitions: one dynamic partition per uploaded slide, keyed <user>/<branch>/<stem>."""

from dagster import DynamicPartitionsDefinition

slides_partitions = DynamicPartitionsDefinition(name="slides")
