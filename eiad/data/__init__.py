"""Data plumbing every source shares: downloads and fetch records, the unified layout and its
manifest, image and mask reading, and mask geometry. Nothing here imports torch."""
