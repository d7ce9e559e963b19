"""Helpers that several test packages share (images, a loopback HTTP server, a Paddle
writer, the reference paths). Test packages import from here, never from each other."""
