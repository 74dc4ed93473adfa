"""detfuzz's fuzzer: strategies, properties, campaigns and the command line."""
