"""The `slides` and `stacks` partitions: one dynamic partition per uploaded slide or stack, keyed <user>/<branch>/<stem>."""

from dagster import DynamicPartitionsDefinition

slides_partitions = DynamicPartitionsDefinition(name="slides")

# Stacks (TCZYX microscopy uploads) share the key scheme, so they queue in their branch with its slides.
stacks_partitions = DynamicPartitionsDefinition(name="stacks")
