"""The `slides` and `stacks` partitions: one dynamic partition per uploaded slide or stack, keyed <user>/<branch>/<stem>."""

from dagster import DynamicPartitionsDefinition

slides_partitions = DynamicPartitionsDefinition(name="slides")

# One partition per branch that has slide labels (<user>/reviews/<branch>/slides.csv), keyed <user>/<branch>.
branches_partitions = DynamicPartitionsDefinition(name="branches")
# Stacks (TCZYX microscopy uploads) share the key scheme, so they queue in their branch with its slides.
stacks_partitions = DynamicPartitionsDefinition(name="stacks")
# Batches (a sub-folder of small images in a branch) share the key scheme <user>/<branch>/<batch>, so they queue in their branch too.
batches_partitions = DynamicPartitionsDefinition(name="batches")
