"""A crash-state harness: what a power loss can leave behind, recovered and checked.

In the spirit of ALICE (Pillai et al., OSDI 2014) and SQLite's crash-test VFS:

1. ``tracer`` runs a workload in a child process with every file-system-mutating
   ``os`` call recorded in order (opens with their flags, writes with their
   positions and bytes, truncates, fsyncs, renames, unlinks, mkdirs), with the
   workload's acknowledged operations interleaved as markers.
2. ``model`` replays a prefix of that trace onto an empty tree, dropping what a
   power loss may drop: data written since a file's last fsync is lost, kept as a
   prefix, or torn at a 512/4096-byte boundary; directory entries created,
   renamed or removed since the directory's last fsync are kept as a prefix of
   that directory's operations.
3. ``check`` opens each such state with logstore and compares it with what the
   markers say was acknowledged.

``python -m tests.crash`` prints the figures (states tried, violations).
"""
