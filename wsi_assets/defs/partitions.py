"""The `slides` partitions: one dynamic partition per uploaded slide, keyed <user>/<branch>/<stem>."""

from dagster import DynamicPartitionsDefinition

slides_partitions = DynamicPartitionsDefinition(name="slides")

# One partition per branch that has slide labels (<user>/reviews/<branch>/slides.csv), keyed <user>/<branch>.
branches_partitions = DynamicPartitionsDefinition(name="branches")
