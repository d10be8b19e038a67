"""A Segment Anything 2.1 server for a labeling team, speaking Label Studio's ML backend protocol.

One process per device: every labeler's clicks share one embedding cache (bounded in bytes),
embeddings wait in one queue where clicks go ahead of warm-ups, and a click on a cached image
costs one decoder pass. With several replicas each image has one owning replica, so its
embedding is computed once for the whole team (routing.py).
"""

VERSION = "1.0.0"
